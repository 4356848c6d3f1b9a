from __future__ import annotations

import datetime as dt

import pytest

from flotilla_accounts.domain import (
    Account,
    AccountKind,
    Branch,
    BranchStatus,
    BranchTerms,
    Direction,
    Entry,
    Money,
    Posting,
    Refusal,
    UnbalancedPosting,
    UnknownCurrency,
    cash_account_id,
    new_account_id,
    settlement_account_id,
)
from flotilla_kit.sharding import shard_of

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_account_ids_carry_their_shard() -> None:
    # The kit's shard_of is what the gateway and payments route by: our ids must parse.
    assert shard_of(new_account_id(3)) == 3
    assert shard_of(new_account_id(999)) == 999
    assert shard_of(cash_account_id(7, "EUR")) == 7
    assert shard_of(settlement_account_id(7, "EUR")) == 7
    assert settlement_account_id(2, "CHF") == "sys_2_settlement_chf"


def test_available_is_balance_less_holds() -> None:
    account = Account("acc_0_x", "alice", "A", "EUR", 100, AccountKind.CUSTOMER, NOW, 30)
    assert account.available_minor == 70


def test_a_known_branch_repeats_its_vote() -> None:
    terms = BranchTerms("acc_0_x", Direction.DEBIT, 10, "EUR")
    prepared = Branch("t", "debit", BranchStatus.PREPARED, terms, NOW, NOW)
    assert prepared.vote().yes
    assert Branch("t", "debit", BranchStatus.COMMITTED, terms, NOW, NOW).vote().yes
    refused = Branch(
        "t", "debit", BranchStatus.ABORTED, terms, NOW, NOW, Refusal.INSUFFICIENT_FUNDS
    )
    assert refused.vote().refusal is Refusal.INSUFFICIENT_FUNDS
    tombstone = Branch("t", "debit", BranchStatus.ABORTED, None, NOW, NOW)
    assert tombstone.is_tombstone
    assert tombstone.vote().refusal is Refusal.ALREADY_ABORTED
    assert terms.same_as(BranchTerms("acc_0_x", Direction.DEBIT, 10, "EUR", reference="other"))
    assert not terms.same_as(BranchTerms("acc_0_x", Direction.DEBIT, 11, "EUR"))


def test_posting_must_balance_per_currency() -> None:
    Posting("p1", "deposit", "", (Entry("a", -5, "EUR"), Entry("b", 5, "EUR")))
    with pytest.raises(UnbalancedPosting):
        Posting("p2", "deposit", "", (Entry("a", -5, "EUR"), Entry("b", 4, "EUR")))
    with pytest.raises(UnbalancedPosting):
        Posting("p3", "deposit", "", (Entry("a", -5, "EUR"), Entry("b", 5, "USD")))


def test_posting_refuses_zero_and_single_entries() -> None:
    with pytest.raises(UnbalancedPosting):
        Posting("p", "x", "", (Entry("a", 0, "EUR"), Entry("b", 0, "EUR")))
    with pytest.raises(UnbalancedPosting):
        Posting("p", "x", "", (Entry("a", 5, "EUR"),))


def test_money_is_integer_minor_units_in_a_known_currency() -> None:
    assert -Money(250, "EUR") == Money(-250, "EUR")
    with pytest.raises(UnknownCurrency):
        Money(1, "XYZ")
    with pytest.raises(TypeError):
        Money(1.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, "EUR")
    with pytest.raises(ValueError, match="range"):
        Money(10**18, "EUR")
