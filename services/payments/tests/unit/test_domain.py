"""The transfer state machine, the decision, and the backoff: pure rules."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import pytest

from flotilla_payments.domain import (
    Decision,
    IllegalTransition,
    Refusal,
    Transfer,
    TransferPath,
    TransferState,
    Vote,
    decide,
    is_legal_transition,
    new_transfer,
)
from services.payments.tests.fakes import T0

S = TransferState
LEGAL = {
    (TransferPath.TWO_PHASE, S.PREPARING, S.COMMITTING),
    (TransferPath.TWO_PHASE, S.PREPARING, S.ABORTING),
    (TransferPath.TWO_PHASE, S.COMMITTING, S.COMMITTED),
    (TransferPath.TWO_PHASE, S.ABORTING, S.ABORTED),
    (TransferPath.LOCAL, S.PREPARING, S.COMMITTED),
    (TransferPath.LOCAL, S.PREPARING, S.ABORTED),
}


def a_transfer(*, same_shard: bool = False) -> Transfer:
    return new_transfer(
        from_account="acc_0_a", to_account="acc_1_b", amount_minor=500, currency="EUR",
        reference="rent", initiator="alice", required_owner="alice", same_shard=same_shard,
        now=T0, lease_owner="p-0", lease_s=10,
    )  # fmt: skip


def test_only_the_listed_transitions_are_legal() -> None:
    for path, current, new in itertools.product(TransferPath, S, S):
        assert is_legal_transition(path, current, new) == ((path, current, new) in LEGAL)


def test_nothing_leaves_a_final_state() -> None:
    for path, final, new in itertools.product(TransferPath, (S.COMMITTED, S.ABORTED), S):
        assert not is_legal_transition(path, final, new)


def test_a_cross_shard_transfer_commits_in_two_steps() -> None:
    transfer = a_transfer()
    assert (transfer.path, transfer.state, transfer.lease_owner) == (
        TransferPath.TWO_PHASE,
        S.PREPARING,
        "p-0",
    )
    later = T0 + dt.timedelta(seconds=1)
    decided = transfer.decide(Decision(commit=True), at=later)
    assert (decided.state, decided.decided_at, decided.completed_at) == (S.COMMITTING, later, None)
    assert decided.lease_owner == "p-0"  # still driven
    done = decided.finish(at=later + dt.timedelta(seconds=1))
    assert (done.state, done.decided_at, done.refusal) == (S.COMMITTED, later, None)
    assert done.completed_at == later + dt.timedelta(seconds=1)
    assert (done.lease_owner, done.lease_until) == (None, None)  # nobody needs to drive it
    with pytest.raises(IllegalTransition):
        done.finish(at=later)
    with pytest.raises(IllegalTransition):
        decided.decide(Decision(commit=False, refusal=Refusal.INVALID), at=later)


def test_an_abort_keeps_its_reason() -> None:
    aborting = a_transfer().decide(
        Decision(commit=False, refusal=Refusal.INSUFFICIENT_FUNDS), at=T0
    )
    aborted = aborting.finish(at=T0)
    assert (aborting.state, aborted.state) == (S.ABORTING, S.ABORTED)
    assert aborted.refusal is Refusal.INSUFFICIENT_FUNDS


def test_a_local_transfer_settles_in_one_step_and_has_no_phase_two() -> None:
    local = a_transfer(same_shard=True)
    assert local.path is TransferPath.LOCAL
    assert local.settle(applied=True, refusal=None, at=T0).state is S.COMMITTED
    refused = local.settle(applied=False, refusal=Refusal.CURRENCY_MISMATCH, at=T0)
    assert (refused.state, refused.refusal) == (S.ABORTED, Refusal.CURRENCY_MISMATCH)
    with pytest.raises(IllegalTransition):
        local.decide(Decision(commit=True), at=T0)
    with pytest.raises(IllegalTransition):
        a_transfer().settle(applied=True, refusal=None, at=T0)


def test_only_an_undecided_cross_shard_transfer_can_expire() -> None:
    transfer = a_transfer()
    assert not transfer.prepare_expired(T0 + dt.timedelta(seconds=9.9), 10)
    assert transfer.prepare_expired(T0 + dt.timedelta(seconds=10), 10)
    assert not a_transfer(same_shard=True).prepare_expired(T0 + dt.timedelta(hours=1), 10)
    decided = transfer.decide(Decision(commit=True), at=T0)
    assert not decided.prepare_expired(T0 + dt.timedelta(hours=1), 10)


@pytest.mark.parametrize(
    ("debit", "credit", "expected"),
    [
        (Vote.yes(), Vote.yes(), Decision(commit=True)),
        (
            Vote.no(Refusal.INSUFFICIENT_FUNDS),
            Vote.yes(),
            Decision(False, Refusal.INSUFFICIENT_FUNDS),
        ),
        (
            Vote.yes(),
            Vote.no(Refusal.ACCOUNT_NOT_FOUND),
            Decision(False, Refusal.ACCOUNT_NOT_FOUND),
        ),
        # The debit side's refusal comes first.
        (
            Vote.no(Refusal.CURRENCY_MISMATCH),
            Vote.no(Refusal.ACCOUNT_NOT_FOUND),
            Decision(False, Refusal.CURRENCY_MISMATCH),
        ),
        # A refusal says more than a silence.
        (
            Vote.unknown(),
            Vote.no(Refusal.ACCOUNT_NOT_FOUND),
            Decision(False, Refusal.ACCOUNT_NOT_FOUND),
        ),
        (Vote.yes(), Vote.unknown(), Decision(False, Refusal.PARTICIPANT_UNAVAILABLE)),
        (Vote.unknown(), Vote.unknown(), Decision(False, Refusal.PARTICIPANT_UNAVAILABLE)),
    ],
)
def test_the_decision_commits_only_on_two_yes_votes(
    debit: Vote, credit: Vote, expected: Decision
) -> None:
    assert decide(debit, credit) == expected


def test_refusals_are_business_or_technical() -> None:
    business = {r for r in Refusal if r.is_business}
    assert business == {
        Refusal.INSUFFICIENT_FUNDS, Refusal.ACCOUNT_NOT_FOUND, Refusal.CURRENCY_MISMATCH, Refusal.INVALID,
    }  # fmt: skip


def test_a_transfer_moves_a_positive_amount_between_two_accounts() -> None:
    transfer = a_transfer()
    for changes in (
        {"amount_minor": 0},
        {"amount_minor": -5},
        {"amount_minor": True},
        {"to_account": "acc_0_a"},
    ):
        with pytest.raises(ValueError, match="transfer"):
            dataclasses.replace(transfer, **changes)
