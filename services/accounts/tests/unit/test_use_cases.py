"""Use cases against an in-memory ledger: the rules, without a database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from flotilla_accounts.domain import Account, Money, Posting
from flotilla_accounts.service_layer import use_cases
from flotilla_accounts.service_layer.errors import AccountNotFound, CurrencyMismatch, NotAllowed
from flotilla_kit.rbac import permissions_of
from flotilla_kit.tokens import Principal


class FakeLedger:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.postings: list[Posting] = []

    async def add_account(self, account: Account) -> None:
        self.accounts[account.id] = account

    async def get(self, account_id: str) -> Account | None:
        return self.accounts.get(account_id)

    async def list_for_owner(self, owner_id: str) -> list[Account]:
        return [a for a in self.accounts.values() if a.owner_id == owner_id]

    async def find_by_owner_and_name(self, owner_id: str, name: str) -> Account | None:
        return next(
            (a for a in self.accounts.values() if (a.owner_id, a.name) == (owner_id, name)), None
        )

    async def ensure_system_account(self, account_id: str, currency: str) -> None:
        return None

    async def post(self, posting: Posting) -> None:
        self.postings.append(posting)
        for entry in posting.entries:
            account = self.accounts.get(entry.account_id)
            if account is not None:
                self.accounts[account.id] = replace(
                    account, balance_minor=account.balance_minor + entry.amount_minor
                )


class FakeAudit:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, dict[str, Any]]] = []

    async def record(
        self, *, actor: str, action: str, target: str, details: Mapping[str, Any]
    ) -> None:
        self.events.append((actor, action, target, dict(details)))


class FakeUow:
    def __init__(self) -> None:
        self.ledger = FakeLedger()
        self.audit = FakeAudit()


def who(subject: str, *roles: str) -> Principal:
    return Principal(
        subject=subject,
        roles=frozenset(roles),
        token_id="t",
        expires_at=0,
        permissions=permissions_of(roles),
    )


async def test_a_customer_sees_only_their_own_accounts() -> None:
    uow = FakeUow()
    alice, bob = who("alice", "customer"), who("bob", "customer")
    mine = await use_cases.open_account(uow, principal=alice, shard=0, name="A", currency="EUR")
    await use_cases.open_account(uow, principal=bob, shard=0, name="B", currency="EUR")
    assert [a.id for a in await use_cases.list_accounts(uow, principal=alice)] == [mine.id]
    with pytest.raises(AccountNotFound):
        await use_cases.get_account(uow, principal=bob, account_id=mine.id)
    staff = who("sam", "support")
    assert (await use_cases.get_account(uow, principal=staff, account_id=mine.id)).id == mine.id


async def test_opening_for_someone_else_needs_the_any_permission() -> None:
    uow = FakeUow()
    with pytest.raises(NotAllowed):
        await use_cases.open_account(
            uow,
            principal=who("alice", "customer"),
            shard=0,
            name="x",
            currency="EUR",
            owner_id="bob",
        )
    opened = await use_cases.open_account(
        uow, principal=who("ada", "admin"), shard=0, name="x", currency="EUR", owner_id="bob"
    )
    assert opened.owner_id == "bob"


async def test_deposit_is_staff_only_balanced_and_in_the_account_currency() -> None:
    uow = FakeUow()
    alice, ada = who("alice", "customer"), who("ada", "admin")
    account = await use_cases.open_account(uow, principal=alice, shard=0, name="A", currency="EUR")
    with pytest.raises(NotAllowed):
        await use_cases.deposit(
            uow, principal=alice, shard=0, account_id=account.id,
            amount=Money(100, "EUR"), reference="r",
        )  # fmt: skip
    with pytest.raises(CurrencyMismatch):
        await use_cases.deposit(
            uow, principal=ada, shard=0, account_id=account.id,
            amount=Money(100, "USD"), reference="r",
        )  # fmt: skip
    _, after = await use_cases.deposit(
        uow, principal=ada, shard=0, account_id=account.id, amount=Money(100, "EUR"), reference="r"
    )
    assert after.balance_minor == 100
    [posting] = uow.ledger.postings
    assert sum(e.amount_minor for e in posting.entries) == 0
    assert uow.audit.events[-1] == (
        "ada",
        "deposit",
        account.id,
        {"posting_id": posting.id, "amount_minor": 100, "currency": "EUR", "reference": "r"},
    )


async def test_read_any_alone_is_enough_to_read_any_account() -> None:
    uow = FakeUow()
    mine = await use_cases.open_account(
        uow, principal=who("alice", "customer"), shard=0, name="A", currency="EUR"
    )
    service = who("service:payments", "service:payments")
    assert (await use_cases.get_account(uow, principal=service, account_id=mine.id)).id == mine.id
    with pytest.raises(NotAllowed):
        await use_cases.list_accounts(uow, principal=service)
