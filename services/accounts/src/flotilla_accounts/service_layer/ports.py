"""What the use cases need from the outside world; adapters provide it, tests fake it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

from flotilla_accounts.domain import (
    Account,
    Branch,
    LocalTransfer,
    Outcome,
    Posting,
    StatementLine,
    Vote,
)
from flotilla_kit.unit_of_work import UnitOfWork
from flotilla_kit.unit_of_work import UnitOfWorkFactory as KitUnitOfWorkFactory

__all__ = [
    "AuditTrail",
    "Branches",
    "Coordinator",
    "Ledger",
    "LedgerUnitOfWork",
    "LocalTransfers",
    "ParticipantMetrics",
    "ParticipantUnitOfWork",
    "UnitOfWorkFactory",
]


class Ledger(Protocol):
    async def add_account(self, account: Account) -> None: ...
    async def get(self, account_id: str) -> Account | None: ...
    async def get_both(
        self, first_id: str, second_id: str
    ) -> tuple[Account | None, Account | None]:
        """Two accounts read at once (one statement where `get` twice would be two)."""
        ...

    async def list_for_owner(self, owner_id: str) -> list[Account]: ...
    async def find_by_owner_and_name(self, owner_id: str, name: str) -> Account | None: ...
    async def ensure_system_account(self, account_id: str, currency: str, name: str) -> None: ...

    async def post(self, posting: Posting, *, then_go_on: bool = True) -> None:
        """Write the posting and move the balances, all or nothing; raises
        `AvailableWouldGoNegative` (and writes nothing) when the database refuses.
        `then_go_on=False`: the caller abandons its whole transaction on a refusal, so
        the rest of it need not stay usable (no savepoint: two round trips fewer on
        PostgreSQL)."""
        ...

    async def hold(self, account_id: str, amount_minor: int) -> bool:
        """Hold `amount_minor` of the account's available balance; False (and nothing
        held) when the database refuses because the available balance would go negative."""
        ...

    async def release(self, account_id: str, amount_minor: int) -> None: ...

    async def statement(
        self, account_id: str, *, limit: int, before: int | None
    ) -> list[StatementLine]:
        """The account's entries, newest first, with ids below `before` when given."""
        ...


class Branches(Protocol):
    async def get(
        self, transfer_id: str, branch_id: str, *, lock: bool = False
    ) -> Branch | None: ...

    async def add(self, branch: Branch) -> bool:
        """Insert; False (and nothing written) when the branch exists already. A concurrent
        insert of the same branch waits for the other transaction to end."""
        ...

    async def save(self, branch: Branch) -> None:
        """Write status, refusal, posting id and update time of an existing branch."""
        ...

    async def prepared_before(self, cutoff: dt.datetime, *, limit: int) -> list[Branch]: ...
    async def count_prepared_before(self, cutoff: dt.datetime) -> int: ...


class LocalTransfers(Protocol):
    async def get(self, transfer_id: str) -> LocalTransfer | None: ...
    async def add(self, transfer: LocalTransfer) -> bool:
        """Insert; False when the transfer id is taken (as `Branches.add`)."""
        ...

    async def save(self, transfer: LocalTransfer) -> None: ...


class AuditTrail(Protocol):
    """Security-relevant events, recorded in the same transaction as the change."""

    async def record(
        self, *, actor: str, action: str, target: str, details: Mapping[str, Any]
    ) -> None: ...


class LedgerUnitOfWork(UnitOfWork, Protocol):
    @property
    def ledger(self) -> Ledger: ...

    @property
    def audit(self) -> AuditTrail: ...


class ParticipantUnitOfWork(LedgerUnitOfWork, Protocol):
    """A transaction the participant opens and commits itself (a NO vote is committed too)."""

    @property
    def branches(self) -> Branches: ...

    @property
    def local_transfers(self) -> LocalTransfers: ...


UnitOfWorkFactory = KitUnitOfWorkFactory[ParticipantUnitOfWork]


class Coordinator(Protocol):
    """The payments service, as a participant in doubt sees it."""

    async def outcome(self, transfer_id: str) -> Outcome:
        """Raises `CoordinatorUnreachable` when no instance answers usably."""
        ...


class ParticipantMetrics(Protocol):
    def prepared(self, vote: Vote) -> None: ...
    def committed(self, outcome: str) -> None: ...  # applied | repeated | refused
    def aborted(self, outcome: str) -> None: ...  # released | tombstone | repeated | refused
    def transferred(self, vote: Vote, *, repeated: bool) -> None: ...
    def recovered(self, action: str) -> None: ...  # commit | abort | pending | error
    def in_doubt(self, count: int) -> None: ...
