"""`Idempotency-Key` for writes: the same key and body replays the stored answer, the same
key with another body is refused (422).

The stored answer is written in the same transaction as the change it describes, so either
both exist or neither does. Two requests racing with one key: the database's primary key
lets one insert win; the loser's whole transaction rolls back and it replays the winner's
answer.

A resource whose answer changes after the request stores instead which resource the key
created (`SqlResourceKeys`, the port being `flotilla_kit.resource_keys.ResourceKeys`) in the
same table, and answers a replay from the resource's current state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, bindparam, select
from starlette.responses import JSONResponse, Response

from flotilla_kit.db import (
    Database,
    IntegrityViolation,
    Query,
    Transaction,
    UniqueViolation,
    UnitOfWork,
    UtcDateTime,
)
from flotilla_kit.problems import Problem
from flotilla_kit.resource_keys import DuplicateIdempotencyKey, KeyedResource

__all__ = [
    "IdempotentResult",
    "SqlResourceKeys",
    "answer_headers",
    "idempotency_table",
    "request_fingerprint",
    "run_idempotently",
    "stored_answer",
    "valid_idempotency_key",
]

_MAX_KEY_LENGTH = 128


def idempotency_table(metadata: MetaData) -> Table:
    """The table a service adds to its own metadata (and migrations)."""
    return Table(
        "idempotency_keys",
        metadata,
        Column("scope", String(200), primary_key=True),
        Column("key", String(_MAX_KEY_LENGTH), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("status", Integer, nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
    )


def valid_idempotency_key(key: str | None) -> str | None:
    """None when absent; a Problem (400) when present but unusable."""
    if key is None:
        return None
    if not 1 <= len(key) <= _MAX_KEY_LENGTH or not key.isprintable():
        raise Problem(
            400,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
            f"The key must be 1 to {_MAX_KEY_LENGTH} printable characters.",
        )
    return key


def request_fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IdempotentResult:
    status: int
    body: Any
    replayed: bool


class _Statements:
    """The two statements of an idempotency table, compiled once per table."""

    def __init__(self, table: Table) -> None:
        c = table.c
        self.find = Query(
            select(c.fingerprint, c.status, c.body).where(
                c.scope == bindparam("scope"), c.key == bindparam("key")
            )
        )
        self.insert = Query(table.insert().values({n.name: bindparam(n.name) for n in c}))


_statements: dict[Table, _Statements] = {}


def _for(table: Table) -> _Statements:
    found = _statements.get(table)
    if found is None:
        found = _statements[table] = _Statements(table)
    return found


async def _stored(
    transaction: Transaction, table: Table, scope: str, key: str, fingerprint: str
) -> IdempotentResult | None:
    row = await transaction.first(_for(table).find, scope=scope, key=key)
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "This key was already used with a different request.",
        )
    return IdempotentResult(row.status, json.loads(row.body), replayed=True)


class SqlResourceKeys:
    """`flotilla_kit.resource_keys.ResourceKeys` in an idempotency table, in `transaction`.

    A key's row holds status 202 and the body `{"<field>": "<resource id>"}` (`field`:
    `order_id`, `transfer_id`, ...): the rows stored so far read the same, so neither may
    change."""

    def __init__(self, transaction: Transaction, table: Table, *, field: str) -> None:
        self.transaction = transaction
        self._statements = _for(table)
        self._field = field

    async def find(self, scope: str, key: str) -> KeyedResource | None:
        # (scope, key) is the primary key: one row at most.
        row = await self.transaction.first(self._statements.find, scope=scope, key=key)
        if row is None:
            return None
        return KeyedResource(row.fingerprint, uuid.UUID(json.loads(row.body)[self._field]))

    async def remember(
        self, scope: str, key: str, *, fingerprint: str, resource_id: uuid.UUID, at: dt.datetime
    ) -> None:
        try:
            await self.transaction.execute(
                self._statements.insert,
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                status=202,
                body=json.dumps({self._field: str(resource_id)}),
                created_at=at,
            )
        except IntegrityViolation as exc:
            # Any constraint, as the services' own copies did; in practice the primary key
            # (scope, key): another request stored it first.
            raise DuplicateIdempotencyKey(key) from exc


U = TypeVar("U", bound=UnitOfWork)


async def run_idempotently(
    database: Database,
    make_uow: Callable[[Database], U],
    table: Table,
    *,
    scope: str,
    key: str | None,
    fingerprint: str,
    action: Callable[[U], Awaitable[tuple[int, Any]]],
) -> IdempotentResult:
    """Run `action` in a unit of work and commit; with a key, store or replay its answer.

    `action` does its writes through the unit of work it is given and returns
    (status, JSON-able body); it must not commit.
    """
    for attempt in range(2):
        async with make_uow(database) as uow:
            if key is not None:
                stored = await _stored(uow.transaction, table, scope, key, fingerprint)
                if stored is not None:
                    return stored
            status, body = await action(uow)
            try:
                if key is not None:
                    await uow.transaction.execute(
                        _for(table).insert,
                        scope=scope,
                        key=key,
                        fingerprint=fingerprint,
                        status=status,
                        body=json.dumps(body, separators=(",", ":")),
                        created_at=dt.datetime.now(dt.UTC),
                    )
                await uow.commit()
            except UniqueViolation:
                # Another request with the same key committed first; replay its answer.
                if key is None or attempt == 1:
                    raise
                continue
            return IdempotentResult(status, body, replayed=False)
    raise AssertionError("unreachable")  # pragma: no cover


def answer_headers(*, replayed: bool, location: str | None = None) -> dict[str, str]:
    """The headers of an idempotent write's answer: `Location` when given, and
    `Idempotency-Replayed: true` when the answer is a replay of the stored one."""
    headers = {"Location": location} if location else {}
    if replayed:
        headers["Idempotency-Replayed"] = "true"
    return headers


def stored_answer(result: IdempotentResult, location: str | None = None) -> Response:
    """The response of a write run by `run_idempotently`: its stored status and body, with
    `answer_headers`."""
    return JSONResponse(
        result.body,
        status_code=result.status,
        headers=answer_headers(replayed=result.replayed, location=location),
    )
