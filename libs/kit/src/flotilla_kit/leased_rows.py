"""The SQL of rows driven under leases (`flotilla_kit.recovery.LeasedRows`), once.

A table whose rows are driven under leases has the columns `id`, `lease_owner`,
`lease_until`, `next_attempt_at` and an attempt count (named as the service likes), and an
expression that says which rows are unfinished. `LeaseStatements` declares, for such a
table, every statement the leases need, each a compare-and-set whose row count says
whether it won; `SqlLeasedRows` is the repository part that runs them in its
`transaction`. A service's repository derives from it, sets `lease_statements`, and
writes only what a lease means for its own rows: `extend_lease` and `release_lease`
(which check what "unchanged" means for them, and count the attempt in their own
column) call `_extend` and `_release`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import Column, ColumnElement, Table, bindparam, func, or_, select, update

from flotilla_kit.db import Query, Transaction

__all__ = ["LeaseStatements", "SqlLeasedRows"]

K = TypeVar("K")
T = TypeVar("T")


class LeaseStatements:
    """The statements of `table`'s leases. `unfinished`: the rows still to drive;
    `attempts`: the attempt count's column; `expected`: the column an extension checks
    is unchanged (a version, a state)."""

    def __init__(
        self,
        table: Table,
        *,
        unfinished: ColumnElement[bool],
        attempts: Column[Any],
        expected: Column[Any],
    ) -> None:
        c = table.c
        lease_free = or_(c.lease_until.is_(None), c.lease_until <= bindparam("now"))
        self.extend = Query(
            update(table)
            .where(
                c.id == bindparam("key"),
                c.lease_owner == bindparam("owner"),
                expected == bindparam("expected"),
            )
            .values(
                {
                    "lease_until": bindparam("until"),
                    attempts.name: bindparam("attempts"),
                    "next_attempt_at": bindparam("next_attempt_at"),
                }
            )
        )
        self.release = Query(
            update(table)
            .where(c.id == bindparam("key"), c.lease_owner == bindparam("owner"), unfinished)
            .values(
                {
                    "lease_owner": None,
                    "lease_until": None,
                    attempts.name: bindparam("attempts"),
                    "next_attempt_at": bindparam("next_attempt_at"),
                }
            )
        )
        self.release_of_owner = Query(
            update(table)
            .where(c.lease_owner == bindparam("owner"), unfinished)
            .values(lease_owner=None, lease_until=None)
        )
        self.due = Query(
            select(c.id)
            .where(unfinished, c.next_attempt_at <= bindparam("now"), lease_free)
            .order_by(c.next_attempt_at, c.id)
            .limit(bindparam("limit"))
        )
        self.claim = Query(
            update(table)
            .where(c.id == bindparam("key"), unfinished, lease_free)
            .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"))
        )
        self.count_unfinished = Query(
            select(func.count().label("unfinished")).select_from(table).where(unfinished)
        )


class SqlLeasedRows(Generic[K, T]):
    """The lease half of a repository over `transaction`; a subclass sets
    `lease_statements` and provides `get`."""

    lease_statements: ClassVar[LeaseStatements]
    transaction: Transaction

    async def get(self, key: K, /) -> T | None:
        raise NotImplementedError

    async def release_leases_of(self, owner: str) -> int:
        return await self.transaction.execute(self.lease_statements.release_of_owner, owner=owner)

    async def due(self, *, now: dt.datetime, limit: int) -> list[K]:
        rows = await self.transaction.all(self.lease_statements.due, now=now, limit=limit)
        return [row.id for row in rows]

    async def claim(self, key: K, *, now: dt.datetime, owner: str, until: dt.datetime) -> T | None:
        changed = await self.transaction.execute(
            self.lease_statements.claim, key=key, now=now, owner=owner, until=until
        )
        if changed != 1:
            return None
        return await self.get(key)

    async def count_unfinished(self) -> int:
        return int(await self.transaction.scalar(self.lease_statements.count_unfinished))

    async def _extend(
        self,
        key: K,
        *,
        expected: Any,
        owner: str,
        until: dt.datetime,
        attempts: int,
        next_attempt_at: dt.datetime,
    ) -> bool:
        changed = await self.transaction.execute(
            self.lease_statements.extend, key=key, expected=expected, owner=owner, until=until,
            attempts=attempts, next_attempt_at=next_attempt_at,
        )  # fmt: skip
        return changed == 1

    async def _release(
        self, key: K, *, owner: str, attempts: int, next_attempt_at: dt.datetime
    ) -> bool:
        changed = await self.transaction.execute(
            self.lease_statements.release, key=key, owner=owner, attempts=attempts,
            next_attempt_at=next_attempt_at,
        )  # fmt: skip
        return changed == 1
