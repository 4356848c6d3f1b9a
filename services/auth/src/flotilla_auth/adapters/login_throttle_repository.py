"""Failed-login counters in SQL, shared by every instance."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, bindparam, delete, insert, or_, select, update

from flotilla_auth.adapters.tables import login_throttles
from flotilla_auth.domain.login_protection import FailureCounter
from flotilla_auth.service_layer.errors import StorageConflict
from flotilla_kit.db import IntegrityViolation, Query, Row, Transaction

__all__ = ["SqlLoginThrottleRepository"]

_c = login_throttles.c
_GET = Query(select(login_throttles).where(_c.key == bindparam("key")))
# PostgreSQL: concurrent failures for one key queue here instead of losing counts. SQLite
# writers already hold the database's write lock.
_GET_FOR_UPDATE = Query(select(login_throttles).where(_c.key == bindparam("key")).with_for_update())
_GET_PAIR = Query(
    select(login_throttles).where(or_(_c.key == bindparam("first"), _c.key == bindparam("second")))
)
_VALUES: dict[str, BindParameter[Any]] = {
    name: bindparam(name)
    for name in ("failures", "window_started_at", "expires_at", "locked_until")
}
_UPDATE = Query(update(login_throttles).where(_c.key == bindparam("key")).values(_VALUES))
_INSERT = Query(insert(login_throttles).values(key=bindparam("key"), **_VALUES))
_DELETE = Query(delete(login_throttles).where(_c.key == bindparam("key")))
_DELETE_EXPIRED = Query(delete(login_throttles).where(_c.expires_at <= bindparam("now")))


def _counter(row: Row) -> FailureCounter:
    return FailureCounter(
        key=row.key,
        failures=row.failures,
        window_started_at=row.window_started_at,
        expires_at=row.expires_at,
        locked_until=row.locked_until,
    )


class SqlLoginThrottleRepository:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def get(self, key: str, *, for_update: bool = False) -> FailureCounter | None:
        row = await self._transaction.first(_GET_FOR_UPDATE if for_update else _GET, key=key)
        return _counter(row) if row is not None else None

    async def get_pair(
        self, first: str, second: str
    ) -> tuple[FailureCounter | None, FailureCounter | None]:
        found = {
            row.key: _counter(row)
            for row in await self._transaction.all(_GET_PAIR, first=first, second=second)
        }
        return found.get(first), found.get(second)

    async def put(self, counter: FailureCounter) -> None:
        values = {
            "key": counter.key,
            "failures": counter.failures,
            "window_started_at": counter.window_started_at,
            "expires_at": counter.expires_at,
            "locked_until": counter.locked_until,
        }
        if await self._transaction.execute(_UPDATE, **values) == 1:
            return
        try:
            await self._transaction.execute(_INSERT, **values)
        except IntegrityViolation as exc:
            raise StorageConflict("a concurrent failure created the counter first") from exc

    async def delete(self, key: str) -> None:
        await self._transaction.execute(_DELETE, key=key)

    async def delete_expired(self, now: datetime) -> int:
        return await self._transaction.execute(_DELETE_EXPIRED, now=now)
