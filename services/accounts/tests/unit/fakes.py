"""In-memory stand-ins for the ports: the rules run without a database.

A `FakeUow` works on a copy of the store and writes it back only on `commit()`, so a use
case that forgets to commit (or fails half way) leaves the store as it was, as the real
unit of work does.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Self

from flotilla_accounts.domain import (
    Account,
    AccountKind,
    AvailableWouldGoNegative,
    Branch,
    BranchStatus,
    LocalTransfer,
    Posting,
    StatementLine,
    Vote,
)


@dataclass
class Store:
    accounts: dict[str, Account] = field(default_factory=dict)
    postings: list[Posting] = field(default_factory=list)
    branches: dict[tuple[str, str], Branch] = field(default_factory=dict)
    local_transfers: dict[str, LocalTransfer] = field(default_factory=dict)
    audit: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    commits: int = 0

    def add_customer(
        self, account_id: str, *, owner: str = "alice", currency: str = "EUR", balance: int = 0
    ) -> Account:
        account = Account(
            id=account_id,
            owner_id=owner,
            name="A",
            currency=currency,
            balance_minor=balance,
            kind=AccountKind.CUSTOMER,
            created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        )
        self.accounts[account_id] = account
        return account


class FakeLedger:
    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def accounts(self) -> dict[str, Account]:
        return self.store.accounts

    @property
    def postings(self) -> list[Posting]:
        return self.store.postings

    async def add_account(self, account: Account) -> None:
        self.store.accounts[account.id] = account

    async def get(self, account_id: str) -> Account | None:
        return self.store.accounts.get(account_id)

    async def get_both(
        self, first_id: str, second_id: str
    ) -> tuple[Account | None, Account | None]:
        return self.store.accounts.get(first_id), self.store.accounts.get(second_id)

    async def list_for_owner(self, owner_id: str) -> list[Account]:
        return [a for a in self.store.accounts.values() if a.owner_id == owner_id]

    async def find_by_owner_and_name(self, owner_id: str, name: str) -> Account | None:
        return next(
            (a for a in self.store.accounts.values() if (a.owner_id, a.name) == (owner_id, name)),
            None,
        )

    async def ensure_system_account(self, account_id: str, currency: str, name: str) -> None:
        self.store.accounts.setdefault(
            account_id,
            Account(
                id=account_id,
                owner_id="bank",
                name=name,
                currency=currency,
                balance_minor=0,
                kind=AccountKind.SYSTEM,
                created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            ),
        )

    async def post(self, posting: Posting, *, then_go_on: bool = True) -> None:
        moved = dict(self.store.accounts)
        for entry in posting.entries:
            account = moved[entry.account_id]
            account = replace(account, balance_minor=account.balance_minor + entry.amount_minor)
            if account.kind is AccountKind.CUSTOMER and account.available_minor < 0:
                raise AvailableWouldGoNegative(account.id)  # the CHECK constraint
            moved[account.id] = account
        self.store.accounts = moved
        self.store.postings.append(posting)

    async def hold(self, account_id: str, amount_minor: int) -> bool:
        account = self.store.accounts[account_id]
        if account.available_minor < amount_minor:
            return False
        self.store.accounts[account_id] = replace(
            account, held_minor=account.held_minor + amount_minor
        )
        return True

    async def release(self, account_id: str, amount_minor: int) -> None:
        account = self.store.accounts[account_id]
        assert account.held_minor >= amount_minor, "released more than was held"
        self.store.accounts[account_id] = replace(
            account, held_minor=account.held_minor - amount_minor
        )

    async def statement(
        self, account_id: str, *, limit: int, before: int | None
    ) -> list[StatementLine]:
        lines = [
            StatementLine(
                i,
                p.id,
                p.kind,
                e.amount_minor,
                e.currency,
                p.reference,
                dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            )
            for i, (p, e) in enumerate(
                ((p, e) for p in self.store.postings for e in p.entries), start=1
            )
            if e.account_id == account_id
        ]
        lines = [line for line in reversed(lines) if before is None or line.id < before]
        return lines[:limit]


class FakeBranches:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, transfer_id: str, branch_id: str, *, lock: bool = False) -> Branch | None:
        return self.store.branches.get((transfer_id, branch_id))

    async def add(self, branch: Branch) -> bool:
        key = (branch.transfer_id, branch.branch_id)
        if key in self.store.branches:
            return False
        self.store.branches[key] = branch
        return True

    async def save(self, branch: Branch) -> None:
        key = (branch.transfer_id, branch.branch_id)
        assert key in self.store.branches
        self.store.branches[key] = branch

    async def prepared_before(self, cutoff: dt.datetime, *, limit: int) -> list[Branch]:
        found = [
            b
            for b in self.store.branches.values()
            if b.status is BranchStatus.PREPARED and b.created_at < cutoff
        ]
        return sorted(found, key=lambda b: b.created_at)[:limit]

    async def count_prepared_before(self, cutoff: dt.datetime) -> int:
        return len(await self.prepared_before(cutoff, limit=10**9))


class FakeLocalTransfers:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, transfer_id: str) -> LocalTransfer | None:
        return self.store.local_transfers.get(transfer_id)

    async def add(self, transfer: LocalTransfer) -> bool:
        if transfer.transfer_id in self.store.local_transfers:
            return False
        self.store.local_transfers[transfer.transfer_id] = transfer
        return True

    async def save(self, transfer: LocalTransfer) -> None:
        self.store.local_transfers[transfer.transfer_id] = transfer


class FakeAudit:
    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def events(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        return self.store.audit

    async def record(
        self, *, actor: str, action: str, target: str, details: Mapping[str, Any]
    ) -> None:
        self.store.audit.append((actor, action, target, dict(details)))


class FakeUow:
    """Works on the store itself when not used as a context manager (the people-facing
    use cases, whose callers commit); inside `async with`, on a copy until `commit()`."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or Store()
        self._bind(self.store)

    def _bind(self, store: Store) -> None:
        self.ledger = FakeLedger(store)
        self.branches = FakeBranches(store)
        self.local_transfers = FakeLocalTransfers(store)
        self.audit = FakeAudit(store)
        self._working = store

    async def __aenter__(self) -> Self:
        self._bind(copy.deepcopy(self.store))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bind(self.store)

    async def commit(self) -> None:
        working = self._working
        for name in ("accounts", "postings", "branches", "local_transfers", "audit"):
            setattr(self.store, name, getattr(working, name))
        self.store.commits += 1


class FakeMetrics:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.in_doubt_count: int | None = None

    def prepared(self, vote: Vote) -> None:
        self.events.append(("prepare", vote.refusal.value if vote.refusal else "yes"))

    def committed(self, outcome: str) -> None:
        self.events.append(("commit", outcome))

    def aborted(self, outcome: str) -> None:
        self.events.append(("abort", outcome))

    def transferred(self, vote: Vote, *, repeated: bool) -> None:
        outcome = vote.refusal.value if vote.refusal else ("repeated" if repeated else "applied")
        self.events.append(("transfer", outcome))

    def recovered(self, action: str) -> None:
        self.events.append(("recovery", action))

    def in_doubt(self, count: int) -> None:
        self.in_doubt_count = count
