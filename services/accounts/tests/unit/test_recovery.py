"""Recovery of in-doubt branches against in-memory fakes (the HTTP side is in the
integration tests)."""

from __future__ import annotations

import datetime as dt

from flotilla_accounts.domain import BranchStatus, Direction, Outcome
from flotilla_accounts.service_layer.errors import CoordinatorUnreachable
from flotilla_accounts.service_layer.participant import Participant, PrepareCall
from flotilla_accounts.service_layer.recovery import RECOVERY_ACTOR, Recovery
from flotilla_kit.clock import ManualClock

from .fakes import FakeMetrics, FakeUow, Store

ACCOUNT = "acc_0_alice"


T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


class FakeCoordinator:
    def __init__(self, answers: dict[str, Outcome | None]) -> None:
        self.answers = answers  # None: unreachable
        self.asked: list[str] = []

    async def outcome(self, transfer_id: str) -> Outcome:
        self.asked.append(transfer_id)
        answer = self.answers[transfer_id]
        if answer is None:
            raise CoordinatorUnreachable("connection refused")
        return answer


def prepare(transfer_id: str, branch_id: str = "debit", amount: int = 10) -> PrepareCall:
    return PrepareCall(transfer_id, branch_id, ACCOUNT, Direction.DEBIT, amount, "EUR")


async def test_a_tick_asks_about_old_branches_only_and_does_what_it_hears() -> None:
    store = Store()
    store.add_customer(ACCOUNT, balance=100)

    def uow(*, write: bool = True) -> FakeUow:
        return FakeUow(store)

    clock, metrics = ManualClock(T0), FakeMetrics()
    participant = Participant(uow, shard=0, metrics=metrics, clock=clock)
    coordinator = FakeCoordinator(
        {"commit-me": Outcome.COMMIT, "abort-me": Outcome.ABORT, "wait": Outcome.PENDING,
         "down": None, "young": Outcome.COMMIT}
    )  # fmt: skip
    recovery = Recovery(
        participant, coordinator, in_doubt_after=dt.timedelta(seconds=10), metrics=metrics
    )
    for transfer_id in ("commit-me", "abort-me", "wait", "down"):
        await participant.prepare(prepare(transfer_id))
    await participant.prepare(prepare("commit-me", "second"))
    clock.now += dt.timedelta(seconds=11)
    await participant.prepare(prepare("young"))
    metrics.events.clear()

    report = await recovery.tick()

    assert sorted(coordinator.asked) == ["abort-me", "commit-me", "down", "wait"]  # once each
    assert sorted(report.committed) == [("commit-me", "debit"), ("commit-me", "second")]
    assert report.aborted == [("abort-me", "debit")]
    assert (report.pending, report.errors, report.in_doubt) == (["wait"], ["down"], 2)
    status = {key: b.status for key, b in store.branches.items()}
    assert status[("commit-me", "debit")] is BranchStatus.COMMITTED
    assert status[("abort-me", "debit")] is BranchStatus.ABORTED
    assert status[("wait", "debit")] is status[("young", "debit")] is BranchStatus.PREPARED
    assert store.accounts[ACCOUNT].balance_minor == 80
    assert store.accounts[ACCOUNT].held_minor == 30  # wait, down, young
    assert {actor for actor, *_ in store.audit} == {RECOVERY_ACTOR}
    assert metrics.in_doubt_count == 2
    assert sorted(e for e in metrics.events if e[0] == "recovery") == [
        ("recovery", "abort"), ("recovery", "commit"), ("recovery", "commit"),
        ("recovery", "error"), ("recovery", "pending"),
    ]  # fmt: skip

    # Later the coordinator has decided and is back; the young branch has aged.
    coordinator.answers |= {"wait": Outcome.ABORT, "down": Outcome.COMMIT}
    clock.now += dt.timedelta(seconds=11)
    report = await recovery.tick()
    assert sorted(report.committed) == [("down", "debit"), ("young", "debit")]
    assert report.aborted == [("wait", "debit")]
    assert report.in_doubt == 0
    assert (store.accounts[ACCOUNT].balance_minor, store.accounts[ACCOUNT].held_minor) == (60, 0)


async def test_without_a_coordinator_a_tick_only_counts() -> None:
    store = Store()
    store.add_customer(ACCOUNT, balance=100)

    def uow(*, write: bool = True) -> FakeUow:
        return FakeUow(store)

    clock, metrics = ManualClock(T0), FakeMetrics()
    participant = Participant(uow, shard=0, metrics=metrics, clock=clock)
    recovery = Recovery(participant, None, in_doubt_after=dt.timedelta(seconds=10), metrics=metrics)
    await participant.prepare(prepare("t"))
    assert (await recovery.tick()).in_doubt == 0
    clock.now += dt.timedelta(seconds=10, microseconds=1)
    assert (await recovery.tick()).in_doubt == 1
    assert metrics.in_doubt_count == 1
    assert store.branches[("t", "debit")].status is BranchStatus.PREPARED
