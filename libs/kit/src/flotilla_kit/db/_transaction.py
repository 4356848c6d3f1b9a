"""A transaction, the one interface repositories see on every backend."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.engine import Dialect

from flotilla_kit.db._query import Query, Row
from flotilla_kit.tracing import DatabaseSpan, database_span

__all__ = ["Transaction"]


class Transaction(abc.ABC):
    """Statements run in order in one database transaction. Nothing is kept unless
    `commit()` is called; the unit of work (or `Database.transaction`) rolls back and
    gives the connection back otherwise.

    `write=True` transactions take the database's write turn up front (SQLite: after the
    process's writers before them, then `BEGIN IMMEDIATE`), so they never fail half way
    for want of the lock.
    """

    dialect: Dialect

    def __init__(self, *, write: bool, system: str, name: str) -> None:
        self.write = write
        self._savepoints = 0
        self._span: DatabaseSpan | None = database_span(system=system, name=name, write=write)
        self._done = False

    # -- what repositories call ------------------------------------------------------------

    @abc.abstractmethod
    async def all(self, query: Query, /, **params: Any) -> list[Row]:
        """Every row the statement returns."""

    async def first(self, query: Query, /, **params: Any) -> Row | None:
        rows = await self.all(query, **params)
        return rows[0] if rows else None

    async def scalar(self, query: Query, /, **params: Any) -> Any:
        """The first column of the first row; None when there is no row."""
        rows = await self.all(query, **params)
        return rows[0][0] if rows else None

    @abc.abstractmethod
    async def execute(self, query: Query, /, **params: Any) -> int:
        """Run a statement that returns no rows; how many rows it changed."""

    @abc.abstractmethod
    async def execute_many(self, query: Query, rows: Sequence[Mapping[str, Any]]) -> None:
        """The statement once per row of parameters, in one driver call."""

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """What runs inside is undone if it raises, and the transaction goes on (PostgreSQL
        would otherwise refuse every later statement after an error)."""
        self._savepoints += 1
        name = f"flotilla_sp{self._savepoints}"
        await self._run_plain(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            await self._run_plain(f"ROLLBACK TO SAVEPOINT {name}")
            await self._run_plain(f"RELEASE SAVEPOINT {name}")
            raise
        await self._run_plain(f"RELEASE SAVEPOINT {name}")

    async def commit(self) -> None:
        await self._finish(commit=True)

    async def rollback(self) -> None:
        await self._finish(commit=False)

    @property
    def finished(self) -> bool:
        return self._done

    # -- what backends provide -------------------------------------------------------------

    @abc.abstractmethod
    async def _run_plain(self, sql: str) -> None:
        """A statement without parameters (transaction control)."""

    @abc.abstractmethod
    async def _end(self, *, commit: bool) -> None:
        """COMMIT or ROLLBACK, then give the connection (and the write turn) back; the
        connection goes back even when COMMIT fails."""

    async def _finish(self, *, commit: bool) -> None:
        if self._done:
            return
        self._done = True
        outcome = "commit" if commit else "rollback"
        try:
            await self._end(commit=commit)
        except BaseException:
            outcome = "failed"
            raise
        finally:
            if self._span is not None:
                self._span.end(outcome)

    def _traced(self, sql: str) -> None:
        """Count a statement on the transaction's span (if it has one)."""
        if self._span is not None:
            self._span.statement(sql)
