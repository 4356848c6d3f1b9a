"""What the use cases need from the outside world; adapters provide it, tests fake it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from flotilla_accounts.domain import Account, Posting

__all__ = ["AuditTrail", "Ledger", "LedgerUnitOfWork"]


class Ledger(Protocol):
    async def add_account(self, account: Account) -> None: ...
    async def get(self, account_id: str) -> Account | None: ...
    async def list_for_owner(self, owner_id: str) -> list[Account]: ...
    async def find_by_owner_and_name(self, owner_id: str, name: str) -> Account | None: ...
    async def ensure_system_account(self, account_id: str, currency: str) -> None: ...
    async def post(self, posting: Posting) -> None: ...


class AuditTrail(Protocol):
    """Security-relevant events, recorded in the same transaction as the change."""

    async def record(
        self, *, actor: str, action: str, target: str, details: Mapping[str, Any]
    ) -> None: ...


class LedgerUnitOfWork(Protocol):
    @property
    def ledger(self) -> Ledger: ...

    @property
    def audit(self) -> AuditTrail: ...
