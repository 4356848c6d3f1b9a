"""The accounts unit of work: one transaction on the shard's database, with its repositories
(the ledger stamps what it writes with the clock the unit of work is given)."""

from __future__ import annotations

from typing import Self

from flotilla_accounts.adapters import SqlBranches, SqlLedger, SqlLocalTransfers
from flotilla_accounts.adapters.audit import SqlAuditTrail
from flotilla_kit.clock import Clock, utc_now
from flotilla_kit.db import Database, UnitOfWork

__all__ = ["AccountsUnitOfWork"]


class AccountsUnitOfWork(UnitOfWork):
    ledger: SqlLedger
    branches: SqlBranches
    local_transfers: SqlLocalTransfers
    audit: SqlAuditTrail

    def __init__(self, database: Database, *, write: bool = True, clock: Clock = utc_now) -> None:
        super().__init__(database, write=write)
        self._clock = clock

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.ledger = SqlLedger(self.transaction, clock=self._clock)
        self.branches = SqlBranches(self.transaction)
        self.local_transfers = SqlLocalTransfers(self.transaction)
        self.audit = SqlAuditTrail(self.transaction)
        return self
