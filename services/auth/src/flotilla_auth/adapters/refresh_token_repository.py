"""Refresh tokens in SQL (only their hashes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, exists, insert, select, update

from flotilla_auth.adapters.tables import refresh_tokens, users
from flotilla_auth.domain.refresh_tokens import RefreshToken
from flotilla_auth.domain.scopes import format_scope
from flotilla_auth.domain.users import User
from flotilla_kit.db import Query, Row, Transaction

__all__ = ["SqlRefreshTokenRepository"]

_t = refresh_tokens.c
_INSERT = Query(
    insert(refresh_tokens).values({column.name: bindparam(column.name) for column in _t})
)
_BY_HASH = Query(select(refresh_tokens).where(_t.token_hash == bindparam("token_hash")))
# The owner's columns next to the token's, under names of their own.
_OWNER_PREFIX = "owner_"
_BY_HASH_WITH_OWNER = Query(
    select(refresh_tokens, *(c.label(_OWNER_PREFIX + c.name) for c in users.c))
    .select_from(refresh_tokens.outerjoin(users, users.c.id == _t.user_id))
    .where(_t.token_hash == bindparam("token_hash"))
)
# Compare-and-set: of two requests racing with one token, PostgreSQL makes the second wait
# for the first and then finds the condition false.
_MARK_USED = Query(
    update(refresh_tokens)
    .where(_t.id == bindparam("id"), _t.used_at.is_(None), _t.revoked_at.is_(None))
    .values(used_at=bindparam("at"))
)
_REVOKE_FAMILY = Query(
    update(refresh_tokens)
    .where(_t.family_id == bindparam("family_id"), _t.revoked_at.is_(None))
    .values(revoked_at=bindparam("at"))
)
_REVOKE_USER = Query(
    update(refresh_tokens)
    .where(_t.user_id == bindparam("user_id"), _t.revoked_at.is_(None))
    .values(revoked_at=bindparam("at"))
)
_FAMILY_REVOKED = Query(
    select(
        exists()
        .where(_t.family_id == bindparam("family_id"), _t.revoked_at.is_not(None))
        .label("revoked")
    )
)
_FAMILIES_REVOKED_SINCE = Query(
    select(_t.family_id)
    .where(_t.revoked_at >= bindparam("since"))
    .distinct()
    .order_by(_t.family_id)
)


def _token(row: Row) -> RefreshToken:
    return RefreshToken(
        id=row.id,
        family_id=row.family_id,
        user_id=row.user_id,
        token_hash=row.token_hash,
        scope=tuple(row.scope.split()),
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        revoked_at=row.revoked_at,
    )


def _owner(row: Row) -> User | None:
    if row.owner_id is None:
        return None
    return User(
        id=row.owner_id,
        username=row.owner_username,
        password_hash=row.owner_password_hash,
        roles=tuple(row.owner_roles),
        created_at=row.owner_created_at,
        disabled=row.owner_disabled,
        locked=row.owner_locked,
    )


class SqlRefreshTokenRepository:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def add(self, token: RefreshToken) -> None:
        await self._transaction.execute(
            _INSERT,
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

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        row = await self._transaction.first(_BY_HASH, token_hash=token_hash)
        return _token(row) if row is not None else None

    async def get_with_owner(self, token_hash: str) -> tuple[RefreshToken, User | None] | None:
        row = await self._transaction.first(_BY_HASH_WITH_OWNER, token_hash=token_hash)
        return (_token(row), _owner(row)) if row is not None else None

    async def mark_used(self, token_id: str, at: datetime) -> bool:
        return await self._transaction.execute(_MARK_USED, id=token_id, at=at) == 1

    async def revoke_family(self, family_id: str, at: datetime) -> int:
        return await self._transaction.execute(_REVOKE_FAMILY, family_id=family_id, at=at)

    async def revoke_user(self, user_id: str, at: datetime) -> int:
        return await self._transaction.execute(_REVOKE_USER, user_id=user_id, at=at)

    async def family_revoked(self, family_id: str) -> bool:
        return bool(await self._transaction.scalar(_FAMILY_REVOKED, family_id=family_id))

    async def families_revoked_since(self, since: datetime) -> Sequence[str]:
        rows = await self._transaction.all(_FAMILIES_REVOKED_SINCE, since=since)
        return [row.family_id for row in rows]
