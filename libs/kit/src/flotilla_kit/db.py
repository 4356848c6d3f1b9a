"""Async SQLAlchemy engine and unit of work for SQLite (default) and PostgreSQL.

SQLite is opened in WAL mode with foreign keys on. Its driver's own transaction handling
is switched off so that a unit of work that writes starts with `BEGIN IMMEDIATE`: it takes
the write lock up front and waits for it (busy timeout) instead of failing half way when
another process wrote first. Readers use a plain deferred `BEGIN` and never block writers.

SQLite has one writer at a time. Across processes its busy handler makes a writer wait,
by sleeping and trying again (1 ms, 2 ms, ... then 100 ms at a time). Within one process
that is far too slow: sixteen concurrent writers spent most of their time asleep. So the
writers of one process queue in order on an asyncio lock first (woken the moment the one
before them is done) and only the process's one writer at a time meets the busy handler,
when another process holds the database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from types import TracebackType
from typing import Any, Self

from sqlalchemy import DateTime, event, make_url, text
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from flotilla_kit.tracing import trace_database

__all__ = [
    "NAMING_CONVENTION",
    "Database",
    "UnitOfWork",
    "UtcDateTime",
    "WriteSessions",
    "is_sqlite",
]

# Named constraints: Alembic can only alter (and SQLite batch mode only rebuild) what it
# can name, and the names are then the same on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_SQLITE_BUSY_TIMEOUT_MS = 30_000


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is timezone-aware UTC going in and coming out, on every backend
    (SQLite stores no zone and would hand back naive datetimes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware one")
        value = value.astimezone(dt.UTC)
        # SQLite keeps no zone: store UTC wall time, so stored values compare correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # busy_timeout first, so the rest waits for a lock instead of failing at once.
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")  # a no-op once the migration set it
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("flotilla_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if mode else "BEGIN")


class _WriterQueue:
    """The writers of one process, in order (one asyncio lock per event loop: tests run
    several loops in one process)."""

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock


class _WriteSession:
    def __init__(self, factory: async_sessionmaker[AsyncSession], queue: _WriterQueue | None):
        self._factory = factory
        self._queue = queue
        self._lock: asyncio.Lock | None = None
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> AsyncSession:
        if self._queue is not None:
            self._lock = self._queue.lock()
            # As long as SQLite's own busy timeout: a writer that never ends is a bug.
            async with asyncio.timeout(_SQLITE_BUSY_TIMEOUT_MS / 1000):
                await self._lock.acquire()
        self._session = self._factory()
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._session is not None:
                await self._session.close()  # rolls back what was not committed
        finally:
            if self._lock is not None:
                self._lock.release()


class WriteSessions:
    """`async with database.write_sessions() as session`: a session whose transaction
    writes (`BEGIN IMMEDIATE` on SQLite, after the process's writers before it)."""

    def __init__(self, factory: async_sessionmaker[AsyncSession], *, queue: bool) -> None:
        self._factory = factory
        self._queue = _WriterQueue() if queue else None

    def __call__(self) -> _WriteSession:
        return _WriteSession(self._factory, self._queue)


def _database_name(url: str) -> str:
    database = make_url(url).database or ""
    return database.rsplit("/", 1)[-1].removesuffix(".db") if is_sqlite(url) else database


class Database:
    """One engine per process, with a session factory for reads and one for writes."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        if is_sqlite(url):
            self.engine = create_async_engine(url, connect_args={"timeout": 30})
            _configure_sqlite(self.engine)
        else:
            self.engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
        # After the SQLite set-up, so its `BEGIN` is not counted as a statement.
        trace_database(self.engine, system=self.engine.dialect.name, name=_database_name(url))
        writer = self.engine.execution_options(flotilla_write=True)
        self.read_sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.write_sessions = WriteSessions(
            async_sessionmaker(writer, expire_on_commit=False), queue=is_sqlite(url)
        )

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


class UnitOfWork:
    """A transaction: rolled back on exit unless `commit()` was called.

    Services subclass it to attach their repositories to `self.session`.
    """

    session: AsyncSession

    def __init__(self, database: Database, *, write: bool = True) -> None:
        self._database = database
        self._write = write
        self._writing: _WriteSession | None = None
        self._committed = False

    async def __aenter__(self) -> Self:
        self._committed = False
        if self._write:
            self._writing = self._database.write_sessions()
            self.session = await self._writing.__aenter__()
        else:
            self.session = self._database.read_sessions()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                await self.session.rollback()
        finally:
            if self._writing is not None:
                writing, self._writing = self._writing, None
                await writing.__aexit__(exc_type, exc, tb)
            else:
                await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
        self._committed = True
