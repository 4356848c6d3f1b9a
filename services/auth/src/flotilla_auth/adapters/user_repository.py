"""Users in SQL."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_auth.adapters.tables import users
from flotilla_auth.domain.users import User
from flotilla_auth.service_layer.errors import StorageConflict

__all__ = ["SqlUserRepository"]


def _user(row: RowMapping) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        password_hash=row["password_hash"],
        roles=tuple(row["roles"]),
        created_at=row["created_at"],
        disabled=row["disabled"],
        locked=row["locked"],
    )


class SqlUserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, user_id: str) -> User | None:
        result = await self._session.execute(select(users).where(users.c.id == user_id))
        row = result.mappings().one_or_none()
        return _user(row) if row is not None else None

    async def get_by_username(self, username: str) -> User | None:
        result = await self._session.execute(select(users).where(users.c.username == username))
        row = result.mappings().one_or_none()
        return _user(row) if row is not None else None

    async def list_page(self, *, after: str | None, limit: int) -> Sequence[User]:
        query = select(users).order_by(users.c.id).limit(limit)
        if after is not None:
            query = query.where(users.c.id > after)
        result = await self._session.execute(query)
        return [_user(row) for row in result.mappings()]

    async def add(self, user: User) -> None:
        # After a conflict the transaction is spoilt (on PostgreSQL); callers start over.
        try:
            await self._session.execute(
                insert(users).values(
                    id=user.id,
                    username=user.username,
                    password_hash=user.password_hash,
                    roles=list(user.roles),
                    created_at=user.created_at,
                    disabled=user.disabled,
                    locked=user.locked,
                )
            )
        except IntegrityError as exc:
            raise StorageConflict(f"username {user.username!r} exists") from exc

    async def update(self, user: User) -> None:
        await self._session.execute(
            update(users)
            .where(users.c.id == user.id)
            .values(
                username=user.username,
                password_hash=user.password_hash,
                roles=list(user.roles),
                disabled=user.disabled,
                locked=user.locked,
            )
        )
