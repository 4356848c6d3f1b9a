"""Users in SQL."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, insert, select, update

from flotilla_auth.adapters.tables import users
from flotilla_auth.domain.users import User
from flotilla_auth.service_layer.errors import StorageConflict
from flotilla_kit.db import IntegrityViolation, Query, Row, Transaction

__all__ = ["SqlUserRepository"]

_BY_ID = Query(select(users).where(users.c.id == bindparam("id")))
_BY_USERNAME = Query(select(users).where(users.c.username == bindparam("username")))
_FIRST_PAGE = Query(select(users).order_by(users.c.id).limit(bindparam("limit")))
_PAGE_AFTER = Query(
    select(users)
    .where(users.c.id > bindparam("after"))
    .order_by(users.c.id)
    .limit(bindparam("limit"))
)
_INSERT = Query(insert(users).values({column.name: bindparam(column.name) for column in users.c}))
_UPDATE = Query(
    update(users)
    .where(users.c.id == bindparam("id"))
    .values(
        username=bindparam("username"),
        password_hash=bindparam("password_hash"),
        roles=bindparam("roles"),
        disabled=bindparam("disabled"),
        locked=bindparam("locked"),
    )
)


def _user(row: Row) -> User:
    return User(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        roles=tuple(row.roles),
        created_at=row.created_at,
        disabled=row.disabled,
        locked=row.locked,
    )


class SqlUserRepository:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def get(self, user_id: str) -> User | None:
        row = await self._transaction.first(_BY_ID, id=user_id)
        return _user(row) if row is not None else None

    async def get_by_username(self, username: str) -> User | None:
        row = await self._transaction.first(_BY_USERNAME, username=username)
        return _user(row) if row is not None else None

    async def list_page(self, *, after: str | None, limit: int) -> Sequence[User]:
        if after is None:
            rows = await self._transaction.all(_FIRST_PAGE, limit=limit)
        else:
            rows = await self._transaction.all(_PAGE_AFTER, after=after, limit=limit)
        return [_user(row) for row in rows]

    async def add(self, user: User) -> None:
        # After a conflict the transaction is spoilt (on PostgreSQL); callers start over.
        try:
            await self._transaction.execute(
                _INSERT,
                id=user.id,
                username=user.username,
                password_hash=user.password_hash,
                roles=list(user.roles),
                created_at=user.created_at,
                disabled=user.disabled,
                locked=user.locked,
            )
        except IntegrityViolation as exc:
            raise StorageConflict(f"username {user.username!r} exists") from exc

    async def update(self, user: User) -> None:
        await self._transaction.execute(
            _UPDATE,
            id=user.id,
            username=user.username,
            password_hash=user.password_hash,
            roles=list(user.roles),
            disabled=user.disabled,
            locked=user.locked,
        )
