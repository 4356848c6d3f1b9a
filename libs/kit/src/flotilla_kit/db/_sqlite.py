"""SQLite through the standard library's `sqlite3`, on the event loop's own thread.

A statement on a local SQLite file takes microseconds; sending it to a thread and back
(what aiosqlite does, per statement) costs more than running it. Measured on this machine
in one run: a transaction of five INSERTs cost 4.4 ms of CPU through async SQLAlchemy and
aiosqlite, 1.0 ms through sync SQLAlchemy and 0.2 ms through `sqlite3`. So statements run
here, synchronously, and only waiting for the write lock is asynchronous.

The database is in WAL mode: readers never block writers nor wait for them. Writers take
turns: those of one process queue in order on an asyncio lock (woken the moment the one
before is done), then `BEGIN IMMEDIATE` takes the file's write lock up front. When another
process holds it, the attempt fails at once (busy timeout 0) and is retried after a short
asynchronous sleep (0.5 ms doubling to 5 ms), so the event loop keeps serving meanwhile;
SQLite's own busy handler would put the whole process to sleep.

One connection writes; readers take a connection from a small stack of idle ones.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from flotilla_kit.db._errors import (
    CheckViolation,
    DatabaseBusy,
    DatabaseError,
    DatabaseUnavailable,
    ForeignKeyViolation,
    IntegrityViolation,
    TextNotStorable,
    UniqueViolation,
)
from flotilla_kit.db._query import Query, Row
from flotilla_kit.db._transaction import Transaction

__all__ = ["SqliteBackend", "SqliteTransaction"]

DIALECT = SQLiteDialect_pysqlite()
WRITE_WAIT_S = 30.0  # a writer that waits this long for the lock gives up: a bug elsewhere
_READER_BUSY_TIMEOUT_MS = 5_000  # rare for a WAL reader; blocking then is acceptable
_FIRST_RETRY_S, _LONGEST_RETRY_S = 0.0005, 0.005
_IDLE_READERS = 8

_UNIQUE = {
    getattr(sqlite3, "SQLITE_CONSTRAINT_UNIQUE", 2067),
    getattr(sqlite3, "SQLITE_CONSTRAINT_PRIMARYKEY", 1555),
}
_CHECK = getattr(sqlite3, "SQLITE_CONSTRAINT_CHECK", 275)
_FOREIGN_KEY = getattr(sqlite3, "SQLITE_CONSTRAINT_FOREIGNKEY", 787)
_BUSY = getattr(sqlite3, "SQLITE_BUSY", 5)
_LOCKED = getattr(sqlite3, "SQLITE_LOCKED", 6)


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_BUSY, _LOCKED)
    return "locked" in str(error)


def _translate(error: sqlite3.Error | UnicodeEncodeError) -> NoReturn:
    if isinstance(error, UnicodeEncodeError):  # a lone surrogate: no UTF-8 spells it
        raise TextNotStorable(str(error)) from error
    if isinstance(error, sqlite3.IntegrityError):
        code = getattr(error, "sqlite_errorcode", None)
        if code in _UNIQUE:
            raise UniqueViolation(str(error)) from error
        if code == _CHECK:
            raise CheckViolation(str(error)) from error
        if code == _FOREIGN_KEY:
            raise ForeignKeyViolation(str(error)) from error
        raise IntegrityViolation(str(error)) from error
    if isinstance(error, sqlite3.OperationalError):
        if _is_busy(error):
            raise DatabaseBusy(str(error)) from error
        raise DatabaseUnavailable(str(error)) from error
    raise DatabaseError(str(error)) from error


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


class SqliteBackend:
    dialect = DIALECT

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._queue = _WriterQueue()

    def _connect(self, *, busy_timeout_ms: int) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path,
                isolation_level=None,  # we say BEGIN and COMMIT ourselves
                check_same_thread=False,
                cached_statements=256,
            )
            connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            connection.execute("PRAGMA journal_mode=WAL")  # a no-op once the migration set it
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as error:
            _translate(error)
        return connection

    async def begin(self, *, write: bool, name: str) -> SqliteTransaction:
        if not write:
            connection = (
                self._readers.pop()
                if self._readers
                else self._connect(busy_timeout_ms=_READER_BUSY_TIMEOUT_MS)
            )
            try:
                connection.execute("BEGIN")
            except sqlite3.Error as error:
                connection.close()
                _translate(error)
            return SqliteTransaction(self, connection, None, name=name)
        lock = self._queue.lock()
        if lock.locked():
            try:
                # As long as the wait for the file lock: a writer that never ends is a bug.
                async with asyncio.timeout(WRITE_WAIT_S):
                    await lock.acquire()
            except TimeoutError:
                raise DatabaseBusy(f"no write turn within {WRITE_WAIT_S:g} s") from None
        else:
            await lock.acquire()  # free: taken at once, no timer needed
        try:
            writer = self._writer
            if writer is None:
                writer = self._writer = self._connect(busy_timeout_ms=0)
            try:
                writer.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                if not _is_busy(error):
                    _translate(error)
                await self._wait_for_the_file(writer)
        except BaseException:
            lock.release()
            raise
        return SqliteTransaction(self, writer, lock, name=name)

    @staticmethod
    async def _wait_for_the_file(connection: sqlite3.Connection) -> None:
        """Another process holds the write lock: try again after a short sleep each time,
        letting the loop serve meanwhile, until `BEGIN IMMEDIATE` succeeds."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + WRITE_WAIT_S
        delay = _FIRST_RETRY_S
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LONGEST_RETRY_S)
            try:
                connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.Error as error:
                if not _is_busy(error):
                    _translate(error)
                if loop.time() >= give_up_at:
                    raise DatabaseBusy(
                        f"another process held the write lock for {WRITE_WAIT_S:g} s"
                    ) from error

    def give_back(
        self, connection: sqlite3.Connection, lock: asyncio.Lock | None, *, broken: bool = False
    ) -> None:
        """A finished transaction's connection (and write turn) back; a broken one closed."""
        if broken:
            connection.close()
            if connection is self._writer:
                self._writer = None
        elif lock is None:
            if len(self._readers) < _IDLE_READERS:
                self._readers.append(connection)
            else:
                connection.close()
        if lock is not None:
            lock.release()

    def ping(self) -> None:
        connection = self._readers.pop() if self._readers else None
        try:
            if connection is None:
                connection = self._connect(busy_timeout_ms=_READER_BUSY_TIMEOUT_MS)
            connection.execute("SELECT 1").fetchall()
        except sqlite3.Error as error:
            if connection is not None:
                connection.close()
            _translate(error)
        self.give_back(connection, None)

    def close(self) -> None:
        for connection in [*self._readers, *([self._writer] if self._writer else [])]:
            connection.close()
        self._readers.clear()
        self._writer = None


class SqliteTransaction(Transaction):
    dialect = DIALECT

    def __init__(
        self,
        backend: SqliteBackend,
        connection: sqlite3.Connection,
        lock: asyncio.Lock | None,
        *,
        name: str,
    ) -> None:
        super().__init__(write=lock is not None, system="sqlite", name=name)
        self._backend = backend
        self._connection = connection
        self._lock = lock

    async def all(self, query: Query, /, **params: Any) -> list[Row]:
        compiled = query.on(DIALECT)
        if self._span is not None:
            self._traced(compiled.sql)
        try:
            raw = self._connection.execute(compiled.sql, compiled.args(params)).fetchall()
        except (sqlite3.Error, UnicodeEncodeError) as error:
            _translate(error)
        return compiled.rows(raw)

    async def execute(self, query: Query, /, **params: Any) -> int:
        compiled = query.on(DIALECT)
        if self._span is not None:
            self._traced(compiled.sql)
        try:
            return self._connection.execute(compiled.sql, compiled.args(params)).rowcount
        except (sqlite3.Error, UnicodeEncodeError) as error:
            _translate(error)

    async def execute_many(self, query: Query, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        compiled = query.on(DIALECT)
        if self._span is not None:
            self._traced(compiled.sql)
        try:
            self._connection.executemany(compiled.sql, [compiled.args(r) for r in rows])
        except (sqlite3.Error, UnicodeEncodeError) as error:
            _translate(error)

    async def _run_plain(self, sql: str) -> None:
        try:
            self._connection.execute(sql)
        except sqlite3.Error as error:
            _translate(error)

    async def _end(self, *, commit: bool) -> None:
        connection = self._connection
        failure: sqlite3.Error | None = None
        broken = False
        try:
            connection.execute("COMMIT" if commit else "ROLLBACK")
        except sqlite3.Error as error:
            failure = error
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    broken = True
        self._backend.give_back(connection, self._lock, broken=broken)
        if failure is not None:
            _translate(failure)
