"""The orders unit of work: the kit's transaction with our repositories on it."""

from __future__ import annotations

from typing import Self

from flotilla_kit.db import Database, UnitOfWork
from flotilla_kit.idempotency import SqlResourceKeys
from flotilla_orders.adapters.events import SqlEventLog
from flotilla_orders.adapters.history_repository import SqlHistory
from flotilla_orders.adapters.order_repository import SqlOrderRepository
from flotilla_orders.adapters.tables import idempotency_keys

__all__ = ["SqlOrdersUnitOfWork", "SqlUnitOfWorkFactory"]


class SqlOrdersUnitOfWork(UnitOfWork):
    orders: SqlOrderRepository
    idempotency: SqlResourceKeys
    events: SqlEventLog
    history: SqlHistory

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.orders = SqlOrderRepository(self.transaction)
        # A key names its order as `{"order_id": ...}`, as every row stored so far does.
        self.idempotency = SqlResourceKeys(self.transaction, idempotency_keys, field="order_id")
        self.events = SqlEventLog(self.transaction)
        self.history = SqlHistory(self.transaction)
        return self


class SqlUnitOfWorkFactory:
    """Opens units of work on one database; `write=False` for reads (on SQLite a reader
    does not take the write lock)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def __call__(self, *, write: bool = True) -> SqlOrdersUnitOfWork:
        return SqlOrdersUnitOfWork(self.database, write=write)
