"""The payments unit of work: the kit's transaction with our repositories on it."""

from __future__ import annotations

from typing import Self

from flotilla_kit.db import Database, UnitOfWork
from flotilla_payments.adapters.audit import SqlAuditTrail
from flotilla_payments.adapters.idempotency_keys import SqlIdempotencyKeys
from flotilla_payments.adapters.outbox import SqlEventOutbox
from flotilla_payments.adapters.transfer_repository import SqlTransferRepository

__all__ = ["SqlPaymentsUnitOfWork", "SqlUnitOfWorkFactory"]


class SqlPaymentsUnitOfWork(UnitOfWork):
    transfers: SqlTransferRepository
    idempotency: SqlIdempotencyKeys
    audit: SqlAuditTrail
    outbox: SqlEventOutbox

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.transfers = SqlTransferRepository(self.transaction)
        self.idempotency = SqlIdempotencyKeys(self.transaction)
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
