"""An append-only, hash-chained audit log, one per service, in the service's own database.

Every record holds the hash of the one before it, so changing, removing or reordering a
record breaks the chain at that point, and `verify` names the first broken record. The
database refuses UPDATE and DELETE on the table (triggers created by the migration, see
`append_only_ddl`), so a bug cannot rewrite history either; only someone with the database
owner's rights can, and the chain shows it.

Records are appended in the caller's transaction (the event and the change it describes
commit together). Appends are serialised per database: SQLite writers already hold the
write lock (`BEGIN IMMEDIATE`); on PostgreSQL a transaction-scoped advisory lock is taken.
An append is two statements (the chain's head, then the new record), prepared once.

Verifying walks the chain (about 7 ms of CPU per 1,000 records on SQLite, measured on this
machine), in batches with a pause for the event loop between them; `verify(since=report)`
walks only what was appended after an earlier intact report, provided the record that
report ended on is still there unchanged (`flotilla_kit.audit_api` uses it to answer often
without walking everything each time).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, bindparam, select, text

from flotilla_kit.db import Database, Query, Row, Transaction, UtcDateTime

__all__ = [
    "GENESIS",
    "AuditLog",
    "AuditRecord",
    "ChainReport",
    "append_only_ddl",
    "audit_table",
]

GENESIS = "0" * 64
_ACTOR_LENGTH = 128
_TARGET_LENGTH = 200
_PG_AUDIT_LOCK = 0x41756474


def audit_table(metadata: MetaData) -> Table:
    return Table(
        "audit_events",
        metadata,
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("at", UtcDateTime(), nullable=False),
        Column("actor", String(_ACTOR_LENGTH), nullable=False),
        Column("action", String(64), nullable=False),
        Column("target", String(_TARGET_LENGTH), nullable=True),
        Column("outcome", String(16), nullable=False),
        Column("details", Text, nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False, unique=True),
    )


def append_only_ddl(dialect: str, table: str = "audit_events") -> list[str]:
    """Statements (for a migration) that make the database refuse UPDATE and DELETE."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
            for verb in ("UPDATE", "DELETE")
        ]
    return [
        f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()",
    ]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: dt.datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class ChainReport:
    """`records` verified from the first on; the first broken one, if any, and why;
    `head`: the hash of the last record verified (where a later walk may go on from)."""

    records: int
    first_broken_seq: int | None = None
    reason: str = ""
    head: str = GENESIS

    @property
    def intact(self) -> bool:
        return self.first_broken_seq is None


def _digest(
    *,
    seq: int,
    at: dt.datetime,
    actor: str,
    action: str,
    target: str | None,
    outcome: str,
    details: str,
    prev_hash: str,
) -> str:
    canonical = json.dumps(
        [
            seq,
            at.astimezone(dt.UTC).isoformat(),
            actor,
            action,
            target,
            outcome,
            details,
            prev_hash,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _row_digest(m: Row) -> str:
    """The hash a stored record's content should have."""
    return _digest(
        seq=m.seq, at=m.at, actor=m.actor, action=m.action, target=m.target,
        outcome=m.outcome, details=m.details, prev_hash=m.prev_hash,
    )  # fmt: skip


class AuditLog:
    def __init__(self, table: Table) -> None:
        self.table = table
        t = table
        self._lock = Query(text(f"SELECT pg_advisory_xact_lock({_PG_AUDIT_LOCK})"))
        self._head = Query(select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1))
        self._insert = Query(t.insert().values({c.name: bindparam(c.name) for c in t.columns}))
        self._page = Query(
            select(t).where(t.c.seq > bindparam("after")).order_by(t.c.seq).limit(bindparam("n"))
        )
        self._newest = Query(select(t).order_by(t.c.seq.desc()).limit(bindparam("n")))
        self._at_seq = Query(select(t).where(t.c.seq == bindparam("seq")))

    async def append(
        self,
        transaction: Transaction,
        *,
        actor: str,
        action: str,
        target: str | None = None,
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
        at: dt.datetime | None = None,
    ) -> AuditRecord:
        """Add one record in the transaction (commit is the caller's)."""
        if transaction.dialect.name == "postgresql":
            await transaction.execute(self._lock)
        # Identifiers from the outside (an attempted username) may be long; the columns
        # are not, and PostgreSQL would refuse the whole transaction.
        actor = actor[:_ACTOR_LENGTH]
        target = target[:_TARGET_LENGTH] if target is not None else None
        last = await transaction.first(self._head)
        seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS)
        moment = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        body = json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":"))
        digest = _digest(
            seq=seq, at=moment, actor=actor, action=action, target=target,
            outcome=outcome, details=body, prev_hash=prev_hash,
        )  # fmt: skip
        await transaction.execute(
            self._insert,
            seq=seq, at=moment, actor=actor, action=action, target=target,
            outcome=outcome, details=body, prev_hash=prev_hash, hash=digest,
        )  # fmt: skip
        return AuditRecord(
            seq, moment, actor, action, target, outcome, dict(details or {}), prev_hash, digest
        )

    async def verify(
        self, transaction: Transaction, batch: int = 1000, *, since: ChainReport | None = None
    ) -> ChainReport:
        """Walk the chain; report the first record whose link or hash is wrong.

        With `since` (an intact report of this chain), only the records appended after it
        are walked, when the last record it verified is still there, unchanged;
        otherwise (it is gone or changed, or `since` is broken) the whole chain is."""
        expected_prev, expected_seq, count = GENESIS, 1, 0
        if since is not None and since.intact and await self._still_ends_at(transaction, since):
            expected_prev, expected_seq, count = since.head, since.records + 1, since.records
        after = expected_seq - 1
        while True:
            rows = await transaction.all(self._page, after=after, n=batch)
            if not rows:
                return ChainReport(count, head=expected_prev)
            for m in rows:
                if m.seq != expected_seq:
                    return ChainReport(
                        count, expected_seq, f"record {expected_seq} is missing", expected_prev
                    )
                if m.prev_hash != expected_prev:
                    return ChainReport(
                        count, m.seq, "does not link to the record before it", expected_prev
                    )
                if _row_digest(m) != m.hash:
                    return ChainReport(
                        count, m.seq, "its content does not match its hash", expected_prev
                    )
                expected_prev, expected_seq = m.hash, m.seq + 1
                count += 1
                after = m.seq
            # On SQLite the statements run on the event loop's thread: let the requests
            # waiting there go first between batches of a long walk.
            await asyncio.sleep(0)

    async def _still_ends_at(self, transaction: Transaction, report: ChainReport) -> bool:
        """The record `report` ended on is there, with its hash, and its content matches it."""
        if report.records == 0:
            return True
        m = await transaction.first(self._at_seq, seq=report.records)
        return m is not None and m.hash == report.head == _row_digest(m)

    async def tail(self, transaction: Transaction, limit: int = 20) -> list[AuditRecord]:
        rows = await transaction.all(self._newest, n=limit)
        return [_record(row) for row in reversed(rows)]

    # -- what the services' `audit-verify` and `audit-tail` commands print -----------------

    async def report(self, database_url: str, service: str) -> dict[str, Any]:
        """Walk the whole chain in the database at `database_url`: a JSON-ready report."""
        database = Database(database_url)
        try:
            async with database.transaction(write=False) as transaction:
                chain = await self.verify(transaction)
                newest = await self.tail(transaction, limit=1)
        finally:
            await database.dispose()
        return {
            "service": service,
            "records": chain.records,
            "intact": chain.intact,
            "first_broken_seq": chain.first_broken_seq,
            "reason": chain.reason,
            "head": newest[0].hash if newest else GENESIS,
        }

    async def newest(self, database_url: str, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` records, oldest first, JSON-ready."""
        database = Database(database_url)
        try:
            async with database.transaction(write=False) as transaction:
                return [record.to_json() for record in await self.tail(transaction, limit=limit)]
        finally:
            await database.dispose()


def _record(m: Row) -> AuditRecord:
    return AuditRecord(
        seq=m.seq,
        at=m.at,
        actor=m.actor,
        action=m.action,
        target=m.target,
        outcome=m.outcome,
        details=json.loads(m.details),
        prev_hash=m.prev_hash,
        hash=m.hash,
    )
