"""Spent client-assertion ids in SQL: each assertion is accepted once (RFC 7523 3.1)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_auth.adapters._rows import count_rows
from flotilla_auth.adapters.tables import client_assertions

__all__ = ["SqlClientAssertionRepository"]


class SqlClientAssertionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def remember(self, *, client_id: str, jti: str, expires_at: datetime) -> bool:
        # The primary key decides between instances: a replay, even one racing the
        # original, fails to insert. The transaction is spoilt then; the caller gives up.
        try:
            await self._session.execute(
                insert(client_assertions).values(
                    client_id=client_id, jti=jti, expires_at=expires_at
                )
            )
        except IntegrityError:
            return False
        return True

    async def delete_expired(self, now: datetime) -> int:
        result = await self._session.execute(
            delete(client_assertions).where(client_assertions.c.expires_at <= now)
        )
        return count_rows(result)
