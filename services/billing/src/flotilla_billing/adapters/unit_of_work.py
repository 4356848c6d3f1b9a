"""The billing unit of work: the kit's transaction with our repositories on it."""

from __future__ import annotations

from typing import Self

from flotilla_billing.adapters.document_repository import SqlDocuments
from flotilla_billing.adapters.events import SqlEventLog
from flotilla_kit.db import Database, UnitOfWork

__all__ = ["SqlBillingUnitOfWork", "SqlUnitOfWorkFactory"]


class SqlBillingUnitOfWork(UnitOfWork):
    documents: SqlDocuments
    events: SqlEventLog

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.documents = SqlDocuments(self.transaction)
        self.events = SqlEventLog(self.transaction)
        return self


class SqlUnitOfWorkFactory:
    """Opens units of work on one database; `write=False` for reads."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def __call__(self, *, write: bool = True) -> SqlBillingUnitOfWork:
        return SqlBillingUnitOfWork(self.database, write=write)
