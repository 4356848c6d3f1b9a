"""Spent client-assertion ids in SQL: each assertion is accepted once (RFC 7523 3.1)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, insert

from flotilla_auth.adapters.tables import client_assertions
from flotilla_kit.db import IntegrityViolation, Query, Transaction

__all__ = ["SqlClientAssertionRepository"]

_INSERT = Query(
    insert(client_assertions).values(
        client_id=bindparam("client_id"), jti=bindparam("jti"), expires_at=bindparam("expires_at")
    )
)
_DELETE_EXPIRED = Query(
    delete(client_assertions).where(client_assertions.c.expires_at <= bindparam("now"))
)


class SqlClientAssertionRepository:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def remember(self, *, client_id: str, jti: str, expires_at: datetime) -> bool:
        # The primary key decides between instances: a replay, even one racing the
        # original, fails to insert. The transaction is spoilt then; the caller gives up.
        try:
            await self._transaction.execute(
                _INSERT, client_id=client_id, jti=jti, expires_at=expires_at
            )
        except IntegrityViolation:
            return False
        return True

    async def delete_expired(self, now: datetime) -> int:
        return await self._transaction.execute(_DELETE_EXPIRED, now=now)
