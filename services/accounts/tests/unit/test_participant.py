"""The 2PC participant's rules against in-memory fakes: every (branch state, call) pair."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from flotilla_accounts.domain import (
    AccountKind,
    BranchStatus,
    Direction,
    LocalTransfer,
    Refusal,
    Vote,
    settlement_account_id,
)
from flotilla_accounts.service_layer.errors import (
    BranchConflict,
    BranchNotAbortable,
    BranchNotCommittable,
    InvalidBranchRef,
    TransferConflict,
)
from flotilla_accounts.service_layer.participant import Participant, PrepareCall, TransferCall
from flotilla_kit.clock import ManualClock

from .fakes import FakeMetrics, FakeUow, Store

ACCOUNT = "acc_0_alice"
T, B = "trf_1", "debit"


T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


@dataclass
class Rig:
    store: Store
    metrics: FakeMetrics
    participant: Participant
    clock: ManualClock

    def held(self, account_id: str = ACCOUNT) -> int:
        return self.store.accounts[account_id].held_minor

    def balance(self, account_id: str = ACCOUNT) -> int:
        return self.store.accounts[account_id].balance_minor

    def status(self, transfer_id: str = T, branch_id: str = B) -> BranchStatus | None:
        branch = self.store.branches.get((transfer_id, branch_id))
        return branch.status if branch else None


@pytest.fixture
def rig() -> Rig:
    store = Store()
    store.add_customer(ACCOUNT, owner="alice", balance=100)
    store.add_customer("acc_0_bob", owner="bob", balance=0)
    store.accounts["sys_0_cash_eur"] = replace(
        store.add_customer("sys_0_cash_eur", owner="bank"), kind=AccountKind.SYSTEM
    )

    def uow(*, write: bool = True) -> FakeUow:
        return FakeUow(store)

    metrics, clock = FakeMetrics(), ManualClock(T0)
    return Rig(store, metrics, Participant(uow, shard=0, metrics=metrics, clock=clock), clock)


def prepare_call(
    amount: int = 30,
    direction: Direction | None = Direction.DEBIT,
    *,
    account: str = ACCOUNT,
    transfer_id: str = T,
    branch_id: str = B,
    currency: str = "EUR",
    owner: str | None = None,
) -> PrepareCall:
    return PrepareCall(
        transfer_id=transfer_id,
        branch_id=branch_id,
        account_id=account,
        direction=direction,
        amount_minor=amount,
        currency=currency,
        required_owner=owner,
        reference="rent",
    )


# How to bring a branch into each state, and the terms a Prepare in that state repeats.
STATES: dict[str, tuple[int, Direction, list[str]]] = {
    "missing": (30, Direction.DEBIT, []),
    "tombstone": (30, Direction.DEBIT, ["abort"]),
    "prepared debit": (30, Direction.DEBIT, ["prepare"]),
    "prepared credit": (30, Direction.CREDIT, ["prepare"]),
    "committed debit": (30, Direction.DEBIT, ["prepare", "commit"]),
    "aborted after prepare": (30, Direction.DEBIT, ["prepare", "abort"]),
    "voted no": (300, Direction.DEBIT, ["prepare"]),  # more than the balance of 100
}


async def call(rig: Rig, state: str, verb: str) -> Any:
    amount, direction, _ = STATES[state]
    if verb == "prepare":
        return await rig.participant.prepare(prepare_call(amount, direction))
    if verb == "commit":
        return await rig.participant.commit(transfer_id=T, branch_id=B, actor="payments")
    return await rig.participant.abort(transfer_id=T, branch_id=B, actor="payments")


@dataclass(frozen=True)
class Rule:
    state: str
    verb: str
    answer: object  # a Vote, a BranchStatus, or the exception type raised
    status: BranchStatus | None  # of the branch afterwards
    held: int
    balance: int
    metric: tuple[str, str]
    unchanged: bool  # the call wrote nothing at all


P, C, A = BranchStatus.PREPARED, BranchStatus.COMMITTED, BranchStatus.ABORTED
YES = Vote()
NO_ABORTED = Vote(Refusal.ALREADY_ABORTED)

RULES = [
    Rule("missing", "prepare", YES, P, 30, 100, ("prepare", "yes"), False),
    Rule("missing", "commit", BranchNotCommittable, None, 0, 100, ("commit", "refused"), True),
    Rule("missing", "abort", A, A, 0, 100, ("abort", "tombstone"), False),
    Rule("tombstone", "prepare", NO_ABORTED, A, 0, 100, ("prepare", "already_aborted"), True),
    Rule("tombstone", "commit", BranchNotCommittable, A, 0, 100, ("commit", "refused"), True),
    Rule("tombstone", "abort", A, A, 0, 100, ("abort", "repeated"), True),
    Rule("prepared debit", "prepare", YES, P, 30, 100, ("prepare", "yes"), True),
    Rule("prepared debit", "commit", C, C, 0, 70, ("commit", "applied"), False),
    Rule("prepared debit", "abort", A, A, 0, 100, ("abort", "released"), False),
    Rule("prepared credit", "prepare", YES, P, 0, 100, ("prepare", "yes"), True),
    Rule("prepared credit", "commit", C, C, 0, 130, ("commit", "applied"), False),
    Rule("prepared credit", "abort", A, A, 0, 100, ("abort", "released"), False),
    Rule("committed debit", "prepare", YES, C, 0, 70, ("prepare", "yes"), True),
    Rule("committed debit", "commit", C, C, 0, 70, ("commit", "repeated"), True),
    Rule("committed debit", "abort", BranchNotAbortable, C, 0, 70, ("abort", "refused"), True),
    Rule("aborted after prepare", "prepare", NO_ABORTED, A, 0, 100, ("prepare", "already_aborted"), True),
    Rule("aborted after prepare", "commit", BranchNotCommittable, A, 0, 100, ("commit", "refused"), True),
    Rule("aborted after prepare", "abort", A, A, 0, 100, ("abort", "repeated"), True),
    Rule("voted no", "prepare", Vote(Refusal.INSUFFICIENT_FUNDS), A, 0, 100, ("prepare", "insufficient_funds"), True),
    Rule("voted no", "commit", BranchNotCommittable, A, 0, 100, ("commit", "refused"), True),
    Rule("voted no", "abort", A, A, 0, 100, ("abort", "repeated"), True),
]  # fmt: skip


def test_the_table_covers_every_state_and_call() -> None:
    assert {(r.state, r.verb) for r in RULES} == {
        (s, v) for s in STATES for v in ("prepare", "commit", "abort")
    }


@pytest.mark.parametrize("rule", RULES, ids=[f"{r.state}: {r.verb}" for r in RULES])
async def test_participant_rules(rig: Rig, rule: Rule) -> None:
    for step in STATES[rule.state][2]:
        await call(rig, rule.state, step)
    before = copy.deepcopy(rig.store)
    rig.metrics.events.clear()
    if isinstance(rule.answer, type):
        with pytest.raises(rule.answer):
            await call(rig, rule.state, rule.verb)
    else:
        answer = await call(rig, rule.state, rule.verb)
        if isinstance(rule.answer, Vote):
            assert isinstance(answer, Vote)
            assert answer.refusal is rule.answer.refusal
        else:
            assert answer is rule.answer
    assert rig.status() is rule.status
    assert (rig.held(), rig.balance()) == (rule.held, rule.balance)
    assert rig.metrics.events == [rule.metric]
    assert (rig.store == before) is rule.unchanged
    # Whatever happened, this shard's ledger balances.
    assert sum(e.amount_minor for p in rig.store.postings for e in p.entries) == 0


async def test_a_commit_posts_through_the_shards_settlement_account(rig: Rig) -> None:
    await rig.participant.prepare(prepare_call(30, Direction.DEBIT, branch_id="debit"))
    await rig.participant.prepare(
        prepare_call(30, Direction.CREDIT, account="acc_0_bob", branch_id="credit")
    )
    await rig.participant.commit(transfer_id=T, branch_id="debit", actor="payments")
    settlement = settlement_account_id(0, "EUR")
    assert rig.store.accounts[settlement].kind is AccountKind.SYSTEM
    assert rig.balance(settlement) == 30
    await rig.participant.commit(transfer_id=T, branch_id="credit", actor="payments")
    # Both sides on one shard: the settlement account is back to zero.
    assert (rig.balance(), rig.balance("acc_0_bob"), rig.balance(settlement)) == (70, 30, 0)
    debit, credit = rig.store.postings
    assert (debit.kind, credit.kind) == ("transfer.debit", "transfer.credit")
    assert [(e.account_id, e.amount_minor) for e in debit.entries] == [
        (ACCOUNT, -30),
        (settlement, 30),
    ]
    assert rig.store.branches[(T, "debit")].posting_id == debit.id
    assert [(actor, action, target) for actor, action, target, _ in rig.store.audit] == [
        ("payments", "branch.committed", ACCOUNT),
        ("payments", "branch.committed", "acc_0_bob"),
    ]


async def test_aborts_are_audited_tombstones_too(rig: Rig) -> None:
    await rig.participant.prepare(prepare_call())
    await rig.participant.abort(transfer_id=T, branch_id=B, actor="payments")
    await rig.participant.abort(transfer_id="trf_2", branch_id=B, actor="payments")
    await rig.participant.abort(transfer_id="trf_2", branch_id=B, actor="payments")  # repeat
    assert [(a, t, d["tombstone"]) for _, a, t, d in rig.store.audit] == [
        ("branch.aborted", ACCOUNT, False),
        ("branch.aborted", "trf_2/debit", True),
    ]


def no(refusal: Refusal) -> Vote:
    return Vote(refusal)


@pytest.mark.parametrize(
    ("call", "refusal", "recorded"),
    [
        (prepare_call(account="acc_0_nobody"), Refusal.ACCOUNT_NOT_FOUND, True),
        (prepare_call(account="sys_0_cash_eur"), Refusal.ACCOUNT_NOT_FOUND, True),
        (
            prepare_call(direction=Direction.CREDIT, account="sys_0_cash_eur"),
            Refusal.ACCOUNT_NOT_FOUND,
            True,
        ),
        (prepare_call(owner="mallory"), Refusal.ACCOUNT_NOT_FOUND, True),
        (
            prepare_call(direction=Direction.CREDIT, owner="mallory"),
            Refusal.ACCOUNT_NOT_FOUND,
            True,
        ),
        (prepare_call(currency="USD"), Refusal.CURRENCY_MISMATCH, True),
        (prepare_call(101), Refusal.INSUFFICIENT_FUNDS, True),
        (prepare_call(account="acc_1_elsewhere"), Refusal.WRONG_SHARD, False),
        (prepare_call(account="not-an-account-id"), Refusal.WRONG_SHARD, False),
        (prepare_call(0), Refusal.INVALID, False),
        (prepare_call(-5), Refusal.INVALID, False),
        (prepare_call(10**16), Refusal.INVALID, False),
        (prepare_call(currency="XYZ"), Refusal.INVALID, False),
        (prepare_call(direction=None), Refusal.INVALID, False),
        (prepare_call(transfer_id=""), Refusal.INVALID, False),
        (prepare_call(transfer_id="t" * 65), Refusal.INVALID, False),
        (prepare_call(branch_id="with space"), Refusal.INVALID, False),
        (prepare_call(account="acc_0_" + "x" * 60), Refusal.INVALID, False),
    ],
)
async def test_prepare_refusals(
    rig: Rig, call: PrepareCall, refusal: Refusal, recorded: bool
) -> None:
    before = copy.deepcopy(rig.store)
    vote = await rig.participant.prepare(call)
    assert vote.refusal is refusal
    assert vote.detail
    assert rig.held() == 0
    # A NO that depends on the ledger is kept (asking again hears it again); one that
    # depends on the request alone writes nothing.
    assert (rig.store != before) is recorded
    if recorded:
        branch = rig.store.branches[(call.transfer_id, call.branch_id)]
        assert (branch.status, branch.refusal) == (BranchStatus.ABORTED, refusal)


async def test_a_no_vote_stays_no_after_the_account_changes(rig: Rig) -> None:
    assert (await rig.participant.prepare(prepare_call(150))).refusal is Refusal.INSUFFICIENT_FUNDS
    rig.store.add_customer(ACCOUNT, balance=1_000)  # a deposit arrived meanwhile
    assert (await rig.participant.prepare(prepare_call(150))).refusal is Refusal.INSUFFICIENT_FUNDS
    assert rig.held() == 0


async def test_holds_add_up_and_never_exceed_the_balance(rig: Rig) -> None:
    votes = [
        await rig.participant.prepare(prepare_call(30, transfer_id=f"trf_{i}")) for i in range(5)
    ]
    assert [v.yes for v in votes] == [True, True, True, False, False]
    assert rig.held() == 90


async def test_the_same_branch_with_other_terms_is_a_coordinator_bug(rig: Rig) -> None:
    await rig.participant.prepare(prepare_call(30))
    before = copy.deepcopy(rig.store)
    with pytest.raises(BranchConflict):
        await rig.participant.prepare(prepare_call(31))
    with pytest.raises(BranchConflict):
        await rig.participant.prepare(prepare_call(30, Direction.CREDIT))
    assert rig.store == before


@pytest.mark.parametrize("verb", ["commit", "abort", "branch"])
@pytest.mark.parametrize(
    ("transfer_id", "branch_id"), [("", "debit"), ("t", ""), ("t" * 65, "debit"), ("t", "a/b")]
)
async def test_phase_two_refuses_malformed_refs(
    rig: Rig, verb: str, transfer_id: str, branch_id: str
) -> None:
    before = copy.deepcopy(rig.store)
    method: Callable[..., Awaitable[object]] = getattr(rig.participant, verb)
    kwargs: dict[str, str] = {"transfer_id": transfer_id, "branch_id": branch_id}
    if verb != "branch":
        kwargs["actor"] = "payments"
    with pytest.raises(InvalidBranchRef):
        await method(**kwargs)
    assert rig.store == before


# Same-shard transfers ----------------------------------------------------------------


def transfer_call(
    amount: int = 40,
    *,
    transfer_id: str = "trf_local",
    source: str = ACCOUNT,
    target: str = "acc_0_bob",
    currency: str = "EUR",
    owner: str | None = "alice",
) -> TransferCall:
    return TransferCall(
        transfer_id=transfer_id,
        from_account=source,
        to_account=target,
        amount_minor=amount,
        currency=currency,
        required_owner=owner,
        reference="lunch",
    )


async def test_a_local_transfer_moves_money_once(rig: Rig) -> None:
    first = await rig.participant.transfer(transfer_call(), actor="payments")
    again = await rig.participant.transfer(transfer_call(), actor="payments")
    assert first.applied
    assert again.applied
    assert first.posting_id == again.posting_id
    assert (rig.balance(), rig.balance("acc_0_bob")) == (60, 40)
    assert len(rig.store.postings) == 1
    assert [e.amount_minor for e in rig.store.postings[0].entries] == [-40, 40]
    assert rig.metrics.events == [("transfer", "applied"), ("transfer", "repeated")]
    [(actor, action, target, details)] = rig.store.audit
    assert (actor, action, target) == ("payments", "transfer.applied", ACCOUNT)
    assert details["on_behalf_of"] == "alice"


@pytest.mark.parametrize(
    ("call", "refusal", "recorded"),
    [
        (transfer_call(101), Refusal.INSUFFICIENT_FUNDS, True),
        (transfer_call(owner="bob"), Refusal.ACCOUNT_NOT_FOUND, True),
        (transfer_call(source="acc_0_nobody"), Refusal.ACCOUNT_NOT_FOUND, True),
        (transfer_call(target="acc_0_nobody"), Refusal.ACCOUNT_NOT_FOUND, True),
        (transfer_call(currency="USD"), Refusal.CURRENCY_MISMATCH, True),
        (transfer_call(target="acc_1_elsewhere"), Refusal.WRONG_SHARD, False),
        (transfer_call(target=ACCOUNT), Refusal.INVALID, False),
        (transfer_call(0), Refusal.INVALID, False),
        (transfer_call(transfer_id=""), Refusal.INVALID, False),
    ],
)
async def test_local_transfer_refusals(
    rig: Rig, call: TransferCall, refusal: Refusal, recorded: bool
) -> None:
    before = copy.deepcopy(rig.store)
    outcome = await rig.participant.transfer(call, actor="payments")
    assert (outcome.applied, outcome.refusal) == (False, refusal)
    assert (rig.balance(), rig.balance("acc_0_bob")) == (100, 0)
    assert rig.store.postings == before.postings
    assert (rig.store != before) is recorded
    if recorded:
        assert rig.store.audit[-1][1] == "transfer.refused"


async def test_a_refused_local_transfer_keeps_its_answer(rig: Rig) -> None:
    assert (
        await rig.participant.transfer(transfer_call(150), actor="p")
    ).refusal is Refusal.INSUFFICIENT_FUNDS
    rig.store.add_customer(ACCOUNT, balance=1_000)
    repeated: LocalTransfer = await rig.participant.transfer(transfer_call(150), actor="p")
    assert repeated.refusal is Refusal.INSUFFICIENT_FUNDS
    assert rig.balance() == 1_000
    with pytest.raises(TransferConflict):
        await rig.participant.transfer(transfer_call(151), actor="p")


async def test_a_local_transfer_cannot_spend_what_is_held(rig: Rig) -> None:
    await rig.participant.prepare(prepare_call(80))
    outcome = await rig.participant.transfer(transfer_call(30), actor="p")
    assert outcome.refusal is Refusal.INSUFFICIENT_FUNDS
    assert (await rig.participant.transfer(transfer_call(20, transfer_id="t2"), actor="p")).applied
    assert (rig.balance(), rig.held()) == (80, 80)


async def test_in_doubt_means_prepared_for_longer_than_the_threshold(rig: Rig) -> None:
    await rig.participant.prepare(prepare_call(10, transfer_id="old"))
    rig.clock.now += dt.timedelta(seconds=30)
    await rig.participant.prepare(prepare_call(10, transfer_id="young"))
    await rig.participant.prepare(prepare_call(10, transfer_id="gone"))
    await rig.participant.abort(transfer_id="gone", branch_id=B, actor="p")
    rig.clock.now += dt.timedelta(seconds=5)
    ten = dt.timedelta(seconds=10)
    assert [b.transfer_id for b in await rig.participant.in_doubt(ten, limit=10)] == ["old"]
    assert await rig.participant.count_in_doubt(ten) == 1
    assert await rig.participant.count_in_doubt(dt.timedelta(seconds=1)) == 2
