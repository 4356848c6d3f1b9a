"""Failed-login counters in SQL, shared by every instance."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_auth.adapters._rows import count_rows
from flotilla_auth.adapters.tables import login_throttles
from flotilla_auth.domain.login_protection import FailureCounter
from flotilla_auth.service_layer.errors import StorageConflict

__all__ = ["SqlLoginThrottleRepository"]


class SqlLoginThrottleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, key: str, *, for_update: bool = False) -> FailureCounter | None:
        query = select(login_throttles).where(login_throttles.c.key == key)
        if for_update:
            # PostgreSQL: concurrent failures for one key queue here instead of losing
            # counts. SQLite writers already hold the database's write lock.
            query = query.with_for_update()
        row = (await self._session.execute(query)).mappings().one_or_none()
        if row is None:
            return None
        return FailureCounter(
            key=row["key"],
            failures=row["failures"],
            window_started_at=row["window_started_at"],
            expires_at=row["expires_at"],
            locked_until=row["locked_until"],
        )

    async def put(self, counter: FailureCounter) -> None:
        values = {
            "failures": counter.failures,
            "window_started_at": counter.window_started_at,
            "expires_at": counter.expires_at,
            "locked_until": counter.locked_until,
        }
        result = await self._session.execute(
            update(login_throttles).where(login_throttles.c.key == counter.key).values(**values)
        )
        if count_rows(result) == 1:
            return
        try:
            await self._session.execute(insert(login_throttles).values(key=counter.key, **values))
        except IntegrityError as exc:
            raise StorageConflict("a concurrent failure created the counter first") from exc

    async def delete(self, key: str) -> None:
        await self._session.execute(delete(login_throttles).where(login_throttles.c.key == key))

    async def delete_expired(self, now: datetime) -> int:
        result = await self._session.execute(
            delete(login_throttles).where(login_throttles.c.expires_at <= now)
        )
        return count_rows(result)
