"""A service's audit log over HTTP, for operators (the web console): `audit_router` serves
`GET <path>?limit=N` (permission `audit:read`) with the chain's state and the newest
records, newest first.

Verifying walks the chain (`AuditLog.verify`; about 7 ms of CPU per 1,000 records on
SQLite), so an instance does not walk all of it on every request: a `ChainWatch` keeps the
last report and walks only what was appended since, and the whole chain again when the
last full walk is `full_walk_every_s` old (a record changed in place further back shows
then). Nothing on a business request's path reads the chain; one walk at a time runs per
instance, and a long one pauses for the event loop between batches.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from flotilla_kit.audit import AuditLog, AuditRecord, ChainReport
from flotilla_kit.clock import Clock, utc_now
from flotilla_kit.db import Database
from flotilla_kit.logs import get_logger
from flotilla_kit.problems import Problem, problem_response
from flotilla_kit.security import require_permission

__all__ = [
    "AUDIT_READ",
    "DEFAULT_LIMIT",
    "FULL_WALK_EVERY_S",
    "MAX_LIMIT",
    "AuditLogOut",
    "AuditRecordOut",
    "ChainOut",
    "ChainWatch",
    "audit_router",
]

AUDIT_READ = "audit:read"
DEFAULT_LIMIT = 20
MAX_LIMIT = 200
FULL_WALK_EVERY_S = 60.0

_log = get_logger("flotilla.audit")


class ChainOut(BaseModel):
    intact: bool = Field(description="No record was changed, removed or reordered.")
    records: int = Field(description="Records verified, from the first on.")
    first_broken: int | None = Field(description="`seq` of the first broken record, if any.")
    reason: str = Field(description="Why that record is broken; empty when intact.")


class AuditRecordOut(BaseModel):
    seq: int
    at: dt.datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    details: dict[str, Any]

    @classmethod
    def of(cls, record: AuditRecord) -> AuditRecordOut:
        return cls(
            seq=record.seq,
            at=record.at,
            actor=record.actor,
            action=record.action,
            target=record.target,
            outcome=record.outcome,
            details=record.details,
        )


class AuditLogOut(BaseModel):
    log: str = Field(description="Which log: `auth`, `payments`, `inventory`, `accounts-s<n>`.")
    chain: ChainOut
    records: list[AuditRecordOut] = Field(description="The newest records, newest first.")


class ChainWatch:
    """The state of one audit chain as this instance last verified it: each `check` walks
    the records appended since the last one, and the whole chain when the last full walk
    is `full_walk_every_s` old (or there was none). One check at a time."""

    def __init__(
        self, audit_log: AuditLog, *, full_walk_every_s: float, clock: Clock = utc_now
    ) -> None:
        self._audit_log = audit_log
        self._full_walk_every = dt.timedelta(seconds=full_walk_every_s)
        self._clock = clock
        self._report: ChainReport | None = None
        self._walked_at: dt.datetime | None = None
        self._lock = asyncio.Lock()

    async def check(self, database: Database) -> ChainReport:
        # The lock is taken before the transaction: requests waiting their turn hold no
        # database connection meanwhile.
        async with self._lock, database.transaction(write=False) as transaction:
            now = self._clock()
            last, walked_at = self._report, self._walked_at
            if last is None or walked_at is None or now - walked_at >= self._full_walk_every:
                report = await self._audit_log.verify(transaction)
                self._walked_at = now
            elif not last.intact:
                return last  # broken stays broken until the next full walk looks again
            else:
                report = await self._audit_log.verify(transaction, since=last)
            if not report.intact:
                _log.warning(
                    "audit chain broken",
                    first_broken_seq=report.first_broken_seq,
                    reason=report.reason,
                )
            self._report = report
            return report


def _answer(log_name: str, report: ChainReport, newest: list[AuditRecord]) -> AuditLogOut:
    return AuditLogOut(
        log=log_name,
        chain=ChainOut(
            intact=report.intact,
            records=report.records,
            first_broken=report.first_broken_seq,
            reason=report.reason,
        ),
        records=[AuditRecordOut.of(record) for record in reversed(newest)],
    )


_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem_response("Missing or invalid access token."),
    403: problem_response("The caller's roles do not grant `audit:read`."),
    422: problem_response("`limit` is not an integer in 1..200 (or `shard` not a number)."),
}

Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description="How many of the newest records to return.")
]


def audit_router(
    path: str,
    *,
    log_name: str,
    audit_log: AuditLog,
    database: Database,
    shard: int | None = None,
    full_walk_every_s: float = FULL_WALK_EVERY_S,
    clock: Clock = utc_now,
) -> APIRouter:
    """A router serving `GET <path>?limit=N` (permission `audit:read`) for the audit log
    `audit_log` in `database`, named `log_name` in the answer.

    A ledger shard's log: `path` holds `{shard}` and `shard` is this instance's; a request
    naming another shard is a 404 problem `audit-log-not-found`."""
    if (shard is None) == ("{shard}" in path):
        raise ValueError(f"{path!r}: a path with {{shard}} needs shard=, and shard= needs one")
    watch = ChainWatch(audit_log, full_walk_every_s=full_walk_every_s, clock=clock)
    router = APIRouter(tags=["audit"], responses=_RESPONSES)
    allowed = [Depends(require_permission(AUDIT_READ))]
    summary = "The audit log's chain state and newest records (operators)"

    async def read(limit: int) -> AuditLogOut:
        report = await watch.check(database)
        async with database.transaction(write=False) as transaction:
            newest = await audit_log.tail(transaction, limit=limit)
        return _answer(log_name, report, newest)

    if shard is None:

        @router.get(path, response_model=AuditLogOut, summary=summary, dependencies=allowed)
        async def audit_log_view(limit: Limit = DEFAULT_LIMIT) -> AuditLogOut:
            return await read(limit)

        return router

    own_shard = shard

    @router.get(
        path,
        response_model=AuditLogOut,
        summary=summary,
        dependencies=allowed,
        responses={404: problem_response("Not this instance's shard (`audit-log-not-found`).")},
    )
    async def shard_audit_log_view(
        shard: Annotated[int, Path(ge=0, description="The ledger shard whose log this is.")],
        limit: Limit = DEFAULT_LIMIT,
    ) -> AuditLogOut:
        if shard != own_shard:
            raise Problem(
                404,
                "audit-log-not-found",
                "Audit log not found",
                f"This instance keeps the audit log of shard {own_shard}, not of shard {shard}.",
            )
        return await read(limit)

    return router
