"""The inventory unit of work: the kit's transaction with our repositories on it."""

from __future__ import annotations

import asyncio
import weakref
from types import TracebackType
from typing import Self

from flotilla_inventory.adapters.audit import SqlAuditTrail
from flotilla_inventory.adapters.products import SqlProducts
from flotilla_inventory.adapters.reservations import SqlReservations
from flotilla_inventory.adapters.stock_events import OutboxStockEvents
from flotilla_kit.db import Database, UnitOfWork, is_sqlite

__all__ = ["SqlInventoryUnitOfWork", "SqlUnitOfWorkFactory"]


# SQLite has one writer at a time. Writers of one process take turns here, in the event
# loop, instead of in SQLite's busy handler (which sleeps in steps of milliseconds) with a
# connection and its thread each: on two cores, a dozen threads contending for the GIL
# cost more than the transactions themselves (measured: 2.4x the throughput at 16
# concurrent reservations). Writers of other processes still meet in SQLite.
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()


def _writer_turn(database: Database) -> asyncio.Lock | None:
    if not is_sqlite(database.url):
        return None
    lock = _SQLITE_WRITERS.get(database)
    if lock is None:
        lock = _SQLITE_WRITERS[database] = asyncio.Lock()
    return lock


class SqlInventoryUnitOfWork(UnitOfWork):
    products: SqlProducts
    reservations: SqlReservations
    events: OutboxStockEvents
    audit: SqlAuditTrail

    def __init__(self, database: Database, *, write: bool = True) -> None:
        super().__init__(database, write=write)
        self._turn = _writer_turn(database) if write else None

    async def __aenter__(self) -> Self:
        if self._turn is not None:
            await self._turn.acquire()
        try:
            await super().__aenter__()
        except BaseException:
            if self._turn is not None:
                self._turn.release()
            raise
        self.products = SqlProducts(self.session)
        self.reservations = SqlReservations(self.session)
        self.events = OutboxStockEvents(self.session)
        self.audit = SqlAuditTrail(self.session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            if self._turn is not None:
                self._turn.release()


class SqlUnitOfWorkFactory:
    """Opens units of work on one database; `write=False` for reads (on SQLite a reader
    does not take the write lock)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def __call__(self, *, write: bool = True) -> SqlInventoryUnitOfWork:
        return SqlInventoryUnitOfWork(self.database, write=write)
