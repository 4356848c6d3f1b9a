"""Refresh tokens in SQL (only their hashes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_auth.adapters._rows import count_rows
from flotilla_auth.adapters.tables import refresh_tokens
from flotilla_auth.domain.refresh_tokens import RefreshToken
from flotilla_auth.domain.scopes import format_scope

__all__ = ["SqlRefreshTokenRepository"]


def _token(row: RowMapping) -> RefreshToken:
    return RefreshToken(
        id=row["id"],
        family_id=row["family_id"],
        user_id=row["user_id"],
        token_hash=row["token_hash"],
        scope=tuple(row["scope"].split()),
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        revoked_at=row["revoked_at"],
    )


class SqlRefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, token: RefreshToken) -> None:
        await self._session.execute(
            insert(refresh_tokens).values(
                id=token.id,
                family_id=token.family_id,
                user_id=token.user_id,
                token_hash=token.token_hash,
                scope=format_scope(token.scope),
                issued_at=token.issued_at,
                expires_at=token.expires_at,
                used_at=token.used_at,
                revoked_at=token.revoked_at,
            )
        )

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        result = await self._session.execute(
            select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
        )
        row = result.mappings().one_or_none()
        return _token(row) if row is not None else None

    async def mark_used(self, token_id: str, at: datetime) -> bool:
        # Compare-and-set: of two requests racing with one token, PostgreSQL makes the
        # second wait for the first and then finds the condition false.
        result = await self._session.execute(
            update(refresh_tokens)
            .where(
                refresh_tokens.c.id == token_id,
                refresh_tokens.c.used_at.is_(None),
                refresh_tokens.c.revoked_at.is_(None),
            )
            .values(used_at=at)
        )
        return count_rows(result) == 1

    async def revoke_family(self, family_id: str, at: datetime) -> int:
        result = await self._session.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return count_rows(result)

    async def revoke_user(self, user_id: str, at: datetime) -> int:
        result = await self._session.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return count_rows(result)

    async def family_revoked(self, family_id: str) -> bool:
        query = select(
            exists().where(
                refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_not(None)
            )
        )
        return bool((await self._session.execute(query)).scalar())

    async def families_revoked_since(self, since: datetime) -> Sequence[str]:
        result = await self._session.execute(
            select(refresh_tokens.c.family_id)
            .where(refresh_tokens.c.revoked_at >= since)
            .distinct()
            .order_by(refresh_tokens.c.family_id)
        )
        return list(result.scalars())
