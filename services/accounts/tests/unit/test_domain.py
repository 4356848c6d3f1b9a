from __future__ import annotations

import pytest

from flotilla_accounts.domain import (
    Entry,
    Money,
    Posting,
    UnbalancedPosting,
    UnknownCurrency,
    new_account_id,
    shard_of,
    system_account_id,
)


def test_account_ids_carry_their_shard() -> None:
    assert shard_of(new_account_id(3)) == 3
    assert shard_of(system_account_id(7, "EUR")) == 7


@pytest.mark.parametrize("bogus", ["", "acc", "acc_x_1", "acc_1_", "usr_1_abc", "acc__abc"])
def test_foreign_ids_have_no_shard(bogus: str) -> None:
    assert shard_of(bogus) is None


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
