"""Crash anywhere, recover everywhere: a transfer stopped at each fault point is finished
by recovery (on another instance, or on this one after a restart), exactly once; of two
recoverers, one wins each transfer; a participant in doubt gets the right answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from flotilla_kit.testing import principal as who
from flotilla_payments.domain import Refusal, Transfer, TransferState
from flotilla_payments.service_layer.coordinator import Outcome
from flotilla_payments.service_layer.errors import NotAllowed
from flotilla_payments.service_layer.faults import FaultPoint
from services.payments.tests.fakes import CrashAt, SimulatedCrash
from services.payments.tests.unit.world import World, send

S = TransferState
P = FaultPoint
LEDGER_SHARD = who("service:accounts", "service:accounts")


async def crash_at(
    world: World, point: FaultPoint, *, target: str | None = None, key: str = "k-1"
) -> Transfer:
    """Run a transfer on instance p-0 until it 'dies' at `point`; return what is stored."""
    coordinator = world.coordinator(instance_id="p-0", faults=CrashAt(point))
    if point is P.AFTER_FIRST_COMMIT:
        # Only the debit side answers before the crash; the credit commit never happens.
        world.ledger.gates[("Commit", "credit")] = asyncio.Event()
    with pytest.raises(SimulatedCrash):
        await send(coordinator, source=world.a0, target=target or world.b1, key=key)
    world.ledger.gates.clear()
    return world.store.transfers[world.store.keys[("alice:transfer", key)].resource_id]


def assert_settled(world: World, total: int) -> None:
    """Jepsen's bank invariants, plus: no branch is left prepared."""
    assert world.bank.total() == total
    for shard in world.bank.shards.values():
        for account in shard.accounts.values():
            assert account.balance >= 0
            assert account.held == 0
            assert account.pending == 0
        assert all(b.status != "prepared" for b in shard.branches.values())


@pytest.mark.parametrize(
    ("point", "stuck_in", "ledger_saw"),
    [
        (P.AFTER_PREPARING_RECORD, S.PREPARING, {}),
        (P.AFTER_PREPARE, S.PREPARING, {"debit": "prepared", "credit": "prepared"}),
        (P.AFTER_DECISION, S.COMMITTING, {"debit": "prepared", "credit": "prepared"}),
        (P.AFTER_FIRST_COMMIT, S.COMMITTING, {"debit": "committed", "credit": "prepared"}),
        (P.BEFORE_DONE, S.COMMITTING, {"debit": "committed", "credit": "committed"}),
    ],
)
async def test_recovery_finishes_a_transfer_stopped_at_each_fault_point(
    world: World, point: FaultPoint, stuck_in: TransferState, ledger_saw: dict[str, str]
) -> None:
    total = world.bank.total()
    stuck = await crash_at(world, point)
    assert (stuck.state, stuck.lease_owner) == (stuck_in, "p-0")
    assert world.bank.statuses(stuck.id) == ledger_saw
    # Another instance takes over once the lease (5 s) has expired, before the
    # prepare timeout (10 s): an undecided transfer gets its votes again and commits.
    recovery = world.recovery(world.coordinator(instance_id="p-1"))
    assert (await recovery.tick()).claimed == 0  # the lease still holds
    world.clock.advance(6)
    report = await recovery.tick()
    assert (report.claimed, report.finished, report.unfinished) == (1, 1, 0)
    done = world.store.transfers[stuck.id]
    assert (done.state, done.lease_owner) == (S.COMMITTED, None)
    assert world.bank.shards[0].balance(world.a0) == 7_500  # exactly once
    assert world.bank.shards[1].balance(world.b1) == 2_500
    assert_settled(world, total)
    kind = "prepare" if stuck_in is S.PREPARING else "commit"
    # Who resumed what stays on record (the chaos run counts recoveries from it).
    assert [(e.action, e.actor) for e in world.store.audit] == [
        ("transfer.requested", "alice"),
        ("transfer.recovered", "system:payments-p-1"),
        ("transfer.committed", "system:payments-p-1"),
    ]
    assert world.store.audit[1].details == {"kind": kind, "state": stuck_in.value, "attempts": 0}
    assert world.metric("flotilla_payments_in_doubt_transfers") == 0
    assert world.metric("flotilla_payments_recovery_actions_total", kind=kind) == 1
    assert world.metric("flotilla_payments_recovery_actions_total", kind="finished") == 1


@pytest.mark.parametrize("point", [P.AFTER_PREPARING_RECORD, P.AFTER_PREPARE])
async def test_an_undecided_transfer_found_after_the_prepare_timeout_is_aborted(
    world: World, point: FaultPoint
) -> None:
    money = world.bank.money()
    stuck = await crash_at(world, point)
    recovery = world.recovery(world.coordinator(instance_id="p-1"))
    world.clock.advance(11)
    assert (await recovery.tick()).finished == 1
    done = world.store.transfers[stuck.id]
    assert (done.state, done.refusal) == (S.ABORTED, Refusal.PREPARE_TIMEOUT)
    assert world.bank.money() == money  # holds released, nothing moved
    assert set(world.bank.statuses(stuck.id).values()) == {"aborted"}
    assert world.ledger.calls_of("Commit") == []
    assert world.metric("flotilla_payments_recovery_actions_total", kind="presumed_abort") == 1
    assert world.store.audit[-1].details["refusal"] == "prepare-timeout"


@pytest.mark.parametrize("point", [P.AFTER_PREPARING_RECORD, P.BEFORE_DONE])
async def test_recovery_sends_a_local_transfer_again(world: World, point: FaultPoint) -> None:
    stuck = await crash_at(world, point, target=world.b0)
    assert stuck.state is S.PREPARING
    recovery = world.recovery(world.coordinator(instance_id="p-1"))
    world.clock.advance(60)  # a local transfer never times out: only the shard can settle it
    assert (await recovery.tick()).finished == 1
    assert world.store.transfers[stuck.id].state is S.COMMITTED
    assert world.bank.shards[0].balance(world.b0) == 2_500  # applied once
    assert world.metric("flotilla_payments_recovery_actions_total", kind="resend_transfer") == 1


async def test_a_restarted_instance_takes_back_its_own_leases_at_once(world: World) -> None:
    stuck = await crash_at(world, P.AFTER_DECISION)
    restarted = world.recovery(world.coordinator(instance_id="p-0"))
    assert await restarted.release_own_leases() == 1
    report = await restarted.tick()  # no need to wait for the lease to expire
    assert (report.claimed, report.finished) == (1, 1)
    assert world.store.transfers[stuck.id].state is S.COMMITTED


async def test_of_two_recoverers_each_transfer_goes_to_exactly_one(world: World) -> None:
    stuck = [await crash_at(world, P.AFTER_DECISION, key=f"k-{n}") for n in range(4)]
    first = world.recovery(world.coordinator(instance_id="p-1"))
    second = world.recovery(world.coordinator(instance_id="p-2"))
    world.clock.advance(6)
    reports = await asyncio.gather(first.tick(), second.tick())
    assert sum(r.claimed for r in reports) == 4
    assert sum(r.finished for r in reports) == 4
    for transfer in stuck:
        assert world.store.transfers[transfer.id].state is S.COMMITTED
        # One commit per branch: nobody drove a transfer twice.
        assert sorted(world.ledger.calls_of("Commit", transfer.id)) == ["credit", "debit"]


async def test_a_claim_loses_to_a_lease_taken_in_between(world: World) -> None:
    stuck = await crash_at(world, P.AFTER_DECISION)
    world.clock.advance(6)
    now = world.clock()
    async with world.uow() as uow:
        assert await uow.transfers.claim(
            stuck.id, now=now, owner="p-1", until=now + dt.timedelta(seconds=5)
        )
        await uow.commit()
    async with world.uow() as uow:
        assert await uow.transfers.claim(stuck.id, now=now, owner="p-2", until=now) is None
    assert world.store.transfers[stuck.id].lease_owner == "p-1"


async def test_a_transfer_recovery_cannot_finish_comes_back_after_a_backoff(world: World) -> None:
    stuck = await crash_at(world, P.AFTER_DECISION)
    world.ledger.down.add(1)
    recovery = world.recovery(
        world.coordinator(instance_id="p-1", retry_initial_s=1, retry_max_s=1)
    )
    world.clock.advance(6)
    report = await recovery.tick()
    assert (report.claimed, report.finished, report.unfinished) == (1, 0, 1)
    released = world.store.transfers[stuck.id]
    assert (released.state, released.lease_owner, released.attempts) == (S.COMMITTING, None, 1)
    assert world.clock() <= released.next_attempt_at <= world.clock() + dt.timedelta(seconds=1)
    assert world.metric("flotilla_payments_in_doubt_transfers") == 1
    assert world.metric("flotilla_payments_recovery_actions_total", kind="retry_scheduled") == 1
    world.ledger.down.clear()
    world.clock.advance(1)
    assert (await recovery.tick()).finished == 1
    assert world.store.transfers[stuck.id].state is S.COMMITTED


async def test_recovery_reports_the_age_of_the_oldest_unfinished_transfer(world: World) -> None:
    # The alert on stuck 2PC transfers reads this gauge: a count cannot tell a busy
    # coordinator from a stuck one, an age can.
    age = "flotilla_payments_oldest_in_doubt_transfer_age_seconds"
    recovery = world.recovery(world.coordinator(instance_id="p-1"))
    await recovery.tick()
    assert world.metric(age) == 0  # nothing unfinished
    await crash_at(world, P.AFTER_DECISION, key="k-old")
    world.clock.advance(2)
    await crash_at(world, P.AFTER_DECISION, key="k-new")
    world.ledger.down.add(1)  # nobody can finish them
    world.clock.advance(4)
    await recovery.tick()  # the leases (5 s) still hold for the younger one
    assert world.metric(age) == 6.0  # the older one's, not the younger's
    assert world.metric("flotilla_payments_in_doubt_transfers") == 2
    world.ledger.down.clear()
    for _ in range(3):  # the backoff may put one off to the next tick
        world.clock.advance(10)
        if not (await recovery.tick()).unfinished:
            break
    assert world.metric("flotilla_payments_in_doubt_transfers") == 0
    assert world.metric(age) == 0


async def test_the_recovery_loop_ticks_at_start_and_then_on_its_interval(world: World) -> None:
    stuck = await crash_at(world, P.AFTER_DECISION)
    world.clock.advance(6)
    recovery = world.recovery(world.coordinator(instance_id="p-1"))
    loop = asyncio.create_task(recovery.run())
    assert await world.clock.next_sleep() == 1.0  # after the first tick
    assert world.store.transfers[stuck.id].state is S.COMMITTED
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop


async def test_a_participant_in_doubt_is_told_the_outcome(world: World) -> None:
    coordinator = world.coordinator(instance_id="p-1")
    outcome = coordinator.outcome
    assert await outcome(principal=LEDGER_SHARD, transfer_id=str(uuid.uuid4())) is Outcome.ABORT
    assert await outcome(principal=LEDGER_SHARD, transfer_id="not-a-uuid") is Outcome.ABORT
    with pytest.raises(NotAllowed):
        await outcome(principal=world.alice, transfer_id=str(uuid.uuid4()))

    committed = (await send(coordinator, source=world.a0, target=world.b1, key="k-1")).transfer
    assert await outcome(principal=LEDGER_SHARD, transfer_id=str(committed.id)) is Outcome.COMMIT
    refused = (
        await send(coordinator, source=world.a0, target=world.b1, key="k-2", amount=10**6)
    ).transfer
    assert await outcome(principal=LEDGER_SHARD, transfer_id=str(refused.id)) is Outcome.ABORT

    deciding = await crash_at(world, P.AFTER_DECISION, key="k-3")
    assert await outcome(principal=LEDGER_SHARD, transfer_id=str(deciding.id)) is Outcome.COMMIT

    undecided = await crash_at(world, P.AFTER_PREPARE, key="k-4")
    assert await outcome(principal=LEDGER_SHARD, transfer_id=str(undecided.id)) is Outcome.PENDING
    assert world.store.transfers[undecided.id].state is S.PREPARING
    world.clock.advance(10)
    assert await outcome(principal=LEDGER_SHARD, transfer_id=str(undecided.id)) is Outcome.ABORT
    presumed = world.store.transfers[undecided.id]
    assert (presumed.state, presumed.refusal) == (S.ABORTING, Refusal.PREPARE_TIMEOUT)
    assert (
        world.metric("flotilla_payments_recovery_actions_total", kind="outcome_presumed_abort") == 1
    )

    local = await crash_at(world, P.AFTER_PREPARING_RECORD, target=world.b0, key="k-5")
    world.clock.advance(3600)
    assert await outcome(principal=LEDGER_SHARD, transfer_id=str(local.id)) is Outcome.PENDING
    assert world.store.transfers[local.id].state is S.PREPARING
