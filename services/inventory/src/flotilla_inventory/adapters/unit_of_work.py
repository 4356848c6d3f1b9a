"""The inventory unit of work: the kit's transaction with our repositories on it."""

from __future__ import annotations

from typing import Self

from flotilla_inventory.adapters.audit import SqlAuditTrail
from flotilla_inventory.adapters.products import SqlProducts
from flotilla_inventory.adapters.reservations import SqlReservations
from flotilla_inventory.adapters.stock_events import OutboxStockEvents
from flotilla_kit.db import Database, UnitOfWork

__all__ = ["SqlInventoryUnitOfWork", "SqlUnitOfWorkFactory"]


class SqlInventoryUnitOfWork(UnitOfWork):
    products: SqlProducts
    reservations: SqlReservations
    events: OutboxStockEvents
    audit: SqlAuditTrail

    async def __aenter__(self) -> Self:
        # On SQLite the kit queues this process's writers in order (flotilla_kit.db).
        await super().__aenter__()
        self.products = SqlProducts(self.transaction)
        self.reservations = SqlReservations(self.transaction)
        self.events = OutboxStockEvents(self.transaction)
        self.audit = SqlAuditTrail(self.transaction)
        return self


class SqlUnitOfWorkFactory:
    """Opens units of work on one database; `write=False` for reads (on SQLite a reader
    does not take the write lock)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def __call__(self, *, write: bool = True) -> SqlInventoryUnitOfWork:
        return SqlInventoryUnitOfWork(self.database, write=write)
