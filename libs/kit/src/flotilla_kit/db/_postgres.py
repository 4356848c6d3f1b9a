"""PostgreSQL through asyncpg directly: natively asynchronous, each statement prepared once
per connection (asyncpg's statement cache), no SQLAlchemy session in between.

A read transaction sends no BEGIN: under READ COMMITTED every statement takes its own
snapshot anyway, so a BEGIN/COMMIT pair would add two round trips and no guarantee. A
write transaction is BEGIN ... COMMIT on one connection of the pool. Connections go back
to the pool without asyncpg's reset query (another round trip): a transaction always ends
with COMMIT or ROLLBACK before its connection is released, and nothing else here changes
a session's state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url

from flotilla_kit.db._errors import (
    CheckViolation,
    DatabaseError,
    DatabaseUnavailable,
    ForeignKeyViolation,
    IntegrityViolation,
    UniqueViolation,
)
from flotilla_kit.db._query import Query, Row
from flotilla_kit.db._transaction import Transaction

__all__ = ["PostgresBackend", "PostgresTransaction", "asyncpg_dsn"]

DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
_CONNECT_TIMEOUT_S = 10.0

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
)


def asyncpg_dsn(url: str) -> str:
    """`postgresql+asyncpg://...` (SQLAlchemy's form, which Alembic uses) for asyncpg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _translate(error: BaseException) -> NoReturn:
    if isinstance(error, asyncpg.exceptions.UniqueViolationError):
        raise UniqueViolation(str(error)) from error
    if isinstance(error, asyncpg.exceptions.CheckViolationError):
        raise CheckViolation(str(error)) from error
    if isinstance(error, asyncpg.exceptions.ForeignKeyViolationError):
        raise ForeignKeyViolation(str(error)) from error
    if isinstance(error, asyncpg.exceptions.IntegrityConstraintViolationError):
        raise IntegrityViolation(str(error)) from error
    if isinstance(error, _UNAVAILABLE):
        raise DatabaseUnavailable(str(error) or type(error).__name__) from error
    raise DatabaseError(str(error)) from error


async def _keep_state(_connection: asyncpg.Connection) -> None:
    """Release without a reset query (see the module's docstring)."""


async def _json_codecs(connection: asyncpg.Connection) -> None:
    """JSON columns as SQLAlchemy's asyncpg dialect has them: its bind processor already
    made the text, and its result processor expects the decoded value."""
    await connection.set_type_codec(
        "json", encoder=str.encode, decoder=lambda raw: json.loads(raw.decode()),
        schema="pg_catalog", format="binary",
    )  # fmt: skip
    # jsonb's binary form starts with a version byte (1).
    await connection.set_type_codec(
        "jsonb", encoder=lambda text: b"\x01" + text.encode(),
        decoder=lambda raw: json.loads(raw[1:].decode()), schema="pg_catalog", format="binary",
    )  # fmt: skip


_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresError,
    *_UNAVAILABLE,
)
_ACQUIRE_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *_DRIVER_ERRORS)


class PostgresBackend:
    dialect = DIALECT

    def __init__(self, url: str, *, pool_size: int) -> None:
        self._dsn = asyncpg_dsn(url)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def _the_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=self._pool_size,
                        reset=_keep_state,
                        init=_json_codecs,
                        timeout=_CONNECT_TIMEOUT_S,
                    )
                except _DRIVER_ERRORS as error:
                    _translate(error)
        return self._pool

    async def begin(self, *, write: bool, name: str) -> PostgresTransaction:
        pool = await self._the_pool()
        try:
            connection = await pool.acquire(timeout=_CONNECT_TIMEOUT_S)
        except _ACQUIRE_ERRORS as error:
            _translate(error)
        if write:
            try:
                await connection.execute("BEGIN")
            except BaseException as error:
                await self.give_back(connection, broken=True)
                if isinstance(error, _DRIVER_ERRORS):
                    _translate(error)
                raise
        return PostgresTransaction(self, connection, write=write, name=name)

    async def give_back(self, connection: PoolConnectionProxy, *, broken: bool = False) -> None:
        pool = self._pool
        if broken:
            connection.terminate()
        if pool is not None:
            await pool.release(connection)

    async def ping(self) -> None:
        pool = await self._the_pool()
        try:
            async with pool.acquire(timeout=_CONNECT_TIMEOUT_S) as connection:
                await connection.fetchval("SELECT 1")
        except _ACQUIRE_ERRORS as error:
            _translate(error)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


def _rowcount(status: str) -> int:
    # "UPDATE 3", "DELETE 0", "INSERT 0 1"
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PostgresTransaction(Transaction):
    dialect = DIALECT

    def __init__(
        self,
        backend: PostgresBackend,
        connection: PoolConnectionProxy,
        *,
        write: bool,
        name: str,
    ) -> None:
        super().__init__(write=write, system="postgresql", name=name)
        self._backend = backend
        self._connection = connection

    async def all(self, query: Query, /, **params: Any) -> list[Row]:
        compiled = query.on(DIALECT)
        if self._span is not None:
            self._traced(compiled.sql)
        try:
            raw = await self._connection.fetch(compiled.sql, *compiled.args(params))
        except _DRIVER_ERRORS as error:
            _translate(error)
        return compiled.rows(raw)

    async def execute(self, query: Query, /, **params: Any) -> int:
        compiled = query.on(DIALECT)
        if self._span is not None:
            self._traced(compiled.sql)
        try:
            status = await self._connection.execute(compiled.sql, *compiled.args(params))
        except _DRIVER_ERRORS as error:
            _translate(error)
        return _rowcount(status)

    async def execute_many(self, query: Query, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        compiled = query.on(DIALECT)
        if self._span is not None:
            self._traced(compiled.sql)
        try:
            await self._connection.executemany(compiled.sql, [compiled.args(r) for r in rows])
        except _DRIVER_ERRORS as error:
            _translate(error)

    async def _run_plain(self, sql: str) -> None:
        if not self.write:
            raise TypeError("savepoints need a write transaction on PostgreSQL")
        try:
            await self._connection.execute(sql)
        except _DRIVER_ERRORS as error:
            _translate(error)

    async def _end(self, *, commit: bool) -> None:
        connection = self._connection
        if not self.write:  # nothing was begun
            await self._backend.give_back(connection)
            return
        failure: BaseException | None = None
        try:
            await connection.execute("COMMIT" if commit else "ROLLBACK")
        except BaseException as error:  # cancelled too: the connection's state is unknown
            failure = error
        await self._backend.give_back(connection, broken=failure is not None)
        if failure is not None:
            if isinstance(failure, _DRIVER_ERRORS):
                _translate(failure)
            raise failure
