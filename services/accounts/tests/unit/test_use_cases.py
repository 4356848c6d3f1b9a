"""Use cases against an in-memory ledger: the rules, without a database."""

from __future__ import annotations

import pytest

from flotilla_accounts.domain import Money
from flotilla_accounts.service_layer import use_cases
from flotilla_accounts.service_layer.errors import (
    AccountNotFound,
    CurrencyMismatch,
    NotAllowed,
    WrongShard,
)
from flotilla_kit.rbac import permissions_of
from flotilla_kit.sharding import home_shard
from flotilla_kit.tokens import Principal

from .fakes import FakeUow


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
    mine = await use_cases.open_account(
        uow, principal=alice, shard=0, shards=1, name="A", currency="EUR"
    )
    await use_cases.open_account(uow, principal=bob, shard=0, shards=1, name="B", currency="EUR")
    listed = await use_cases.list_accounts(uow, principal=alice, shard=0, shards=1)
    assert [a.id for a in listed] == [mine.id]
    with pytest.raises(NotAllowed):
        await use_cases.list_accounts(uow, principal=bob, shard=0, shards=1, owner_id="alice")
    with pytest.raises(AccountNotFound):
        await use_cases.get_account(uow, principal=bob, shard=0, account_id=mine.id)
    staff = who("sam", "support")
    assert (
        await use_cases.get_account(uow, principal=staff, shard=0, account_id=mine.id)
    ).id == mine.id
    for_staff = await use_cases.list_accounts(
        uow, principal=staff, shard=0, shards=1, owner_id="alice"
    )
    assert [a.id for a in for_staff] == [mine.id]


async def test_opening_for_someone_else_needs_the_any_permission() -> None:
    uow = FakeUow()
    with pytest.raises(NotAllowed):
        await use_cases.open_account(
            uow,
            principal=who("alice", "customer"),
            shard=0,
            shards=1,
            name="x",
            currency="EUR",
            owner_id="bob",
        )
    opened = await use_cases.open_account(
        uow,
        principal=who("ada", "admin"),
        shard=0,
        shards=1,
        name="x",
        currency="EUR",
        owner_id="bob",
    )
    assert opened.owner_id == "bob"


async def test_deposit_is_staff_only_balanced_and_in_the_account_currency() -> None:
    uow = FakeUow()
    alice, ada = who("alice", "customer"), who("ada", "admin")
    account = await use_cases.open_account(
        uow, principal=alice, shard=0, shards=1, name="A", currency="EUR"
    )
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
        uow, principal=who("alice", "customer"), shard=0, shards=1, name="A", currency="EUR"
    )
    service = who("service:payments", "service:payments")
    found = await use_cases.get_account(uow, principal=service, shard=0, account_id=mine.id)
    assert found.id == mine.id
    with pytest.raises(NotAllowed):
        await use_cases.list_accounts(uow, principal=service, shard=0, shards=1)


def owner_on(shard: int, shards: int) -> str:
    """A user whose home is `shard` among `shards`."""
    return next(f"user-{i}" for i in range(1000) if home_shard(f"user-{i}", shards) == shard)


async def test_accounts_are_opened_only_on_their_owners_home_shard() -> None:
    uow = FakeUow()
    here, elsewhere = owner_on(1, 3), owner_on(2, 3)
    opened = await use_cases.open_account(
        uow, principal=who(here, "customer"), shard=1, shards=3, name="A", currency="EUR"
    )
    assert opened.id.startswith("acc_1_")
    with pytest.raises(WrongShard) as refused:
        await use_cases.open_account(
            uow, principal=who(elsewhere, "customer"), shard=1, shards=3, name="A", currency="EUR"
        )
    assert refused.value.home == 2
    with pytest.raises(WrongShard):
        await use_cases.open_account(
            uow, principal=who("ada", "admin"), shard=1, shards=3, name="A", currency="EUR",
            owner_id=elsewhere,
        )  # fmt: skip
    assert list(uow.ledger.accounts) == [opened.id]
    assert len(uow.audit.events) == 1


async def test_an_id_of_another_shard_is_unknown_even_to_staff() -> None:
    uow = FakeUow()
    uow.store.add_customer("acc_1_abc", owner="alice", balance=10)
    staff = who("sam", "support")
    with pytest.raises(AccountNotFound):
        await use_cases.get_account(uow, principal=staff, shard=0, account_id="acc_1_abc")
    assert (await use_cases.get_account(uow, principal=staff, shard=1, account_id="acc_1_abc")).id


async def test_a_statement_is_paged_newest_first() -> None:
    uow = FakeUow()
    alice, ada = who("alice", "customer"), who("ada", "admin")
    account = await use_cases.open_account(
        uow, principal=alice, shard=0, shards=1, name="A", currency="EUR"
    )
    for amount in (1, 2, 3, 4, 5):
        await use_cases.deposit(
            uow, principal=ada, shard=0, account_id=account.id, amount=Money(amount, "EUR"),
            reference=f"d{amount}",
        )  # fmt: skip
    seen: list[int] = []
    after: int | None = None
    for _ in range(3):
        page, after = await use_cases.account_entries(
            uow, principal=alice, shard=0, account_id=account.id, limit=2, after=after
        )
        seen += [line.amount_minor for line in page]
        if after is None:
            break
    assert seen == [5, 4, 3, 2, 1]
    with pytest.raises(AccountNotFound):
        await use_cases.account_entries(
            uow, principal=who("bob", "customer"), shard=0, account_id=account.id, limit=2
        )
