"""The payments unit of work: the kit's transaction with our repositories on it."""

from __future__ import annotations

from typing import Self

from flotilla_kit.db import Database, UnitOfWork
from flotilla_kit.idempotency import SqlResourceKeys
from flotilla_payments.adapters.audit import SqlAuditTrail
from flotilla_payments.adapters.outbox import SqlEventOutbox
from flotilla_payments.adapters.tables import idempotency_keys
from flotilla_payments.adapters.transfer_repository import SqlTransferRepository

__all__ = ["SqlPaymentsUnitOfWork", "SqlUnitOfWorkFactory"]


class SqlPaymentsUnitOfWork(UnitOfWork):
    transfers: SqlTransferRepository
    idempotency: SqlResourceKeys
    audit: SqlAuditTrail
    outbox: SqlEventOutbox

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.transfers = SqlTransferRepository(self.transaction)
        # A key names its transfer as `{"transfer_id": ...}`, as every row stored so far does.
        self.idempotency = SqlResourceKeys(self.transaction, idempotency_keys, field="transfer_id")
        self.audit = SqlAuditTrail(self.transaction)
        self.outbox = SqlEventOutbox(self.transaction)
        return self


class SqlUnitOfWorkFactory:
    """Opens units of work on one database; `write=False` for reads (on SQLite a reader
    does not take the write lock)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def __call__(self, *, write: bool = True) -> SqlPaymentsUnitOfWork:
        return SqlPaymentsUnitOfWork(self.database, write=write)
