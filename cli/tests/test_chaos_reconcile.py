"""The chaos test's verdict is only as good as its checks: each invariant must catch the
fault it names (a chaos run that could not fail would prove nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flotilla_cli.chaos.reconcile import LedgerFacts, check_invariants


def _healthy() -> tuple[LedgerFacts, dict[str, tuple[str, str]], dict[str, str]]:
    """Two accounts holding 100 each; a 2pc transfer of 30 and a local one of 5 committed,
    one aborted, as the shards and the coordinator would record them."""
    ledger = LedgerFacts(
        balances={"acc_0_a": 75, "acc_1_b": 125},
        applied={"t-2pc": {"debit", "credit"}, "t-local": {"local"}},
    )
    ledger.settlement_total["eur"] = 0
    coordinator = {
        "t-2pc": ("committed", "2pc"),
        "t-local": ("committed", "local"),
        "t-no": ("aborted", "2pc"),
    }
    answered = {"t-2pc": "committed", "t-local": "committed", "t-no": "rejected"}
    return ledger, coordinator, answered


def _verdict(
    ledger: LedgerFacts, coordinator: dict[str, tuple[str, str]], answered: dict[str, str]
) -> dict[str, bool]:
    checks = check_invariants(
        ledger=ledger,
        coordinator=coordinator,
        scenario_accounts=["acc_0_a", "acc_1_b"],
        deposited_minor=200,
        answered=answered,
    )
    return {name: result["holds"] for name, result in checks.items()}


def test_a_healthy_bank_passes_every_check() -> None:
    assert all(_verdict(*_healthy()).values())


Breakage = Callable[[LedgerFacts, dict[str, tuple[str, str]], dict[str, str]], Any]

BREAKAGES: dict[str, Breakage] = {
    "total_unchanged": lambda ledger, *_: ledger.balances.update({"acc_0_a": 76}),
    "no_negative_balance": lambda ledger, *_: setattr(ledger, "negative_available", 1),
    "no_branch_prepared": lambda ledger, *_: setattr(ledger, "prepared_branches", 1),
    "no_hold_left": lambda ledger, *_: setattr(ledger, "held_total", 30),
    "settlement_nets_to_zero": lambda ledger, *_: ledger.settlement_total.update({"eur": 30}),
    "double_entry_per_shard": lambda ledger, *_: ledger.unbalanced_shards.append(1),
    "balances_match_entries": lambda ledger, *_: setattr(ledger, "balance_mismatches", 2),
    "every_transfer_finished": lambda _, coordinator, __: coordinator.update(
        {"t-stuck": ("committing", "2pc")}
    ),
    # The coordinator committed, one shard never applied its branch.
    "committed_applied_exactly_once": lambda ledger, *_: ledger.applied.update(
        {"t-2pc": {"debit"}}
    ),
    "aborted_not_applied": lambda ledger, *_: ledger.applied.update({"t-no": {"credit"}}),
    "answered_committed_is_committed": lambda _, __, answered: answered.update(
        {"t-never": "committed"}
    ),
    "answered_refused_not_applied": lambda ledger, _, answered: answered.update(
        {"t-local": "aborted"}
    ),
    "no_ledger_change_without_a_transfer": lambda ledger, *_: ledger.applied.update(
        {"t-ghost": {"local"}}
    ),
}


def test_every_invariant_has_a_breakage_here() -> None:
    assert set(BREAKAGES) == set(_verdict(*_healthy()))


@pytest.mark.parametrize("invariant", sorted(BREAKAGES))
def test_each_check_catches_its_fault(invariant: str) -> None:
    ledger, coordinator, answered = _healthy()
    BREAKAGES[invariant](ledger, coordinator, answered)
    failed = {name for name, holds in _verdict(ledger, coordinator, answered).items() if not holds}
    assert invariant in failed
