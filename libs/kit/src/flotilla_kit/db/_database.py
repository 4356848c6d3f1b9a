"""`Database`: one per process and database; it opens transactions. `UnitOfWork`: a
transaction with a service's repositories on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

from sqlalchemy.engine import Dialect, make_url

from flotilla_kit.db._postgres import PostgresBackend
from flotilla_kit.db._sqlite import SqliteBackend
from flotilla_kit.db._transaction import Transaction
from flotilla_kit.db._types import is_sqlite

__all__ = ["Database", "UnitOfWork"]


def _database_name(url: str) -> str:
    database = make_url(url).database or ""
    return database.rsplit("/", 1)[-1].removesuffix(".db") if is_sqlite(url) else database


class Database:
    """The database at a SQLAlchemy URL (`sqlite:///path`, `sqlite+aiosqlite:///path`,
    `postgresql+asyncpg://...`: the form Alembic is given too)."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.name = _database_name(url)
        self._backend: SqliteBackend | PostgresBackend
        if is_sqlite(url):
            path = make_url(url).database
            if not path:
                raise ValueError(f"a SQLite URL needs a file: {url!r}")
            self._backend = SqliteBackend(path)
        else:
            self._backend = PostgresBackend(url, pool_size=pool_size)

    @property
    def dialect(self) -> Dialect:
        return self._backend.dialect

    @property
    def is_sqlite(self) -> bool:
        return isinstance(self._backend, SqliteBackend)

    async def begin(self, *, write: bool) -> Transaction:
        """A transaction the caller must end (`commit()` or `rollback()`); prefer
        `transaction()` or a unit of work, which end it whatever happens."""
        return await self._backend.begin(write=write, name=self.name)

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[Transaction]:
        """`async with database.transaction() as tx: ...; await tx.commit()`: rolled back
        on the way out unless committed."""
        tx = await self.begin(write=write)
        try:
            yield tx
        finally:
            await tx.rollback()  # a no-op after commit()

    async def ping(self) -> None:
        if isinstance(self._backend, SqliteBackend):
            self._backend.ping()
        else:
            await self._backend.ping()

    async def dispose(self) -> None:
        if isinstance(self._backend, SqliteBackend):
            self._backend.close()
        else:
            await self._backend.close()


class UnitOfWork:
    """A transaction: rolled back on exit unless `commit()` was called.

    Services subclass it to attach their repositories to `self.transaction`.
    """

    transaction: Transaction

    def __init__(self, database: Database, *, write: bool = True) -> None:
        self._database = database
        self._write = write

    async def __aenter__(self) -> Self:
        self.transaction = await self._database.begin(write=self._write)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.transaction.rollback()  # a no-op after commit()

    async def commit(self) -> None:
        await self.transaction.commit()
