"""A saga interrupted anywhere is finished by another instance, exactly once; of several
instances (or a slow driver and recovery), one drives an order at a time."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from flotilla_orders.domain import CancelReason, OrderState, SagaStep
from flotilla_orders.service_layer.faults import FaultPoint
from services.orders.tests.fakes import CrashAt, SimulatedCrash, expire_the_hold_while_paying
from services.orders.tests.unit.world import Instance, Lines, World

P = FaultPoint


@dataclass(frozen=True)
class Path:
    """A way through the saga, the fault points on it, and how it must end."""

    name: str
    prepare: Callable[[World], None]
    points: tuple[FaultPoint, ...]
    state: OrderState
    reason: CancelReason | None
    payments: int  # transfers that moved money: payment, refund
    lines: Lines = (("apple", 2), ("pear", 1))


def _nothing(world: World) -> None:
    return None


def _abort_the_first_payment(world: World) -> None:
    world.bank.abort_next = 1


def _expire_the_hold_while_paying(world: World) -> None:
    expire_the_hold_while_paying(world.bank, world.stock)


def _poor(world: World) -> None:
    world.bank.accounts[world.wallet].balance = 100


PATHS = [
    Path(
        "confirmed", _nothing,
        (P.AFTER_ORDER_RECORDED, P.AFTER_RESERVE_CALL, P.AFTER_PAYING_RECORDED, P.AFTER_PAY_CALL,
         P.AFTER_COMMITTING_RECORDED, P.AFTER_COMMIT_CALL, P.AFTER_FINAL_RECORDED),
        OrderState.CONFIRMED, None, 1,
    ),
    Path(
        "a payment aborted once", _abort_the_first_payment,
        (P.AFTER_PAY_CALL, P.AFTER_ATTEMPT_RECORDED), OrderState.CONFIRMED, None, 1,
    ),
    Path(
        "insufficient funds", _poor,
        (P.AFTER_PAY_CALL, P.AFTER_RELEASING_RECORDED, P.AFTER_RELEASE_CALL,
         P.AFTER_FINAL_RECORDED),
        OrderState.CANCELLED, CancelReason.INSUFFICIENT_FUNDS, 0,
    ),
    Path(
        "the hold expired while paying", _expire_the_hold_while_paying,
        (P.AFTER_COMMIT_CALL, P.AFTER_REFUNDING_RECORDED, P.AFTER_REFUND_CALL,
         P.AFTER_RELEASING_RECORDED, P.AFTER_RELEASE_CALL, P.AFTER_FINAL_RECORDED),
        OrderState.CANCELLED, CancelReason.RESERVATION_EXPIRED, 2,
    ),
    Path(
        "out of stock", _nothing, (P.AFTER_RESERVE_CALL, P.AFTER_FINAL_RECORDED),
        OrderState.CANCELLED, CancelReason.OUT_OF_STOCK, 0, lines=(("apple", 11),),
    ),
]  # fmt: skip
CASES = [(path, point) for path in PATHS for point in path.points]
# Every fault point is crashed at on some path.
assert {point for _, point in CASES} == set(FaultPoint)


async def finish_by_recovery(world: World, instance: Instance, *, rounds: int = 30) -> None:
    """Tick `instance`'s recovery, moving the clock past each backoff, until nothing is
    left unfinished."""
    for _ in range(rounds):
        if (await instance.recovery.tick()).unfinished == 0:
            return
        world.clock.advance(10)
    raise AssertionError("recovery did not finish the order")


@pytest.mark.parametrize(
    ("path", "point"), CASES, ids=[f"{path.name}: {point.value}" for path, point in CASES]
)
async def test_a_saga_that_died_anywhere_is_finished_by_another_instance_exactly_once(
    world: World, path: Path, point: FaultPoint
) -> None:
    path.prepare(world)
    money = world.bank.total()
    faults = CrashAt(point)
    dying = world.instance("o-a", faults=faults)
    with pytest.raises(SimulatedCrash) if point is P.AFTER_ORDER_RECORDED else _no_raise():
        await world.place(dying, path.lines)
    await world.drive_out(dying)  # until it 'dies'
    assert faults.crashed
    stuck = world.order()
    assert stuck.lease_owner in ("o-a", None)

    other = world.instance("o-b")
    if not stuck.is_final:
        assert (await other.recovery.tick()).claimed == 0  # the dead driver's lease holds
        world.clock.advance(6)  # past it
    await finish_by_recovery(world, other)

    order = world.order()
    assert (order.state, order.reason) == (path.state, path.reason)
    assert len(world.bank.applied) == path.payments  # no payment or refund twice
    assert world.bank.total() == money
    held_once = 0 if path.reason is CancelReason.OUT_OF_STOCK else 1
    assert len(world.stock.holds) == held_once
    assert len(world.stock.commits) == (1 if path.state is OrderState.CONFIRMED else 0)
    assert world.stock.held() == 0  # nothing left held
    event = "order_confirmed" if path.state is OrderState.CONFIRMED else "order_cancelled"
    assert world.events() == [(event, str(order.id))]  # the final event once


class _no_raise:  # noqa: N801 - reads like pytest.raises at the call site
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


async def crash_after_recording(world: World, instance_id: str = "o-a") -> None:
    dying = world.instance(instance_id, faults=CrashAt(P.AFTER_ORDER_RECORDED))
    with pytest.raises(SimulatedCrash):
        await world.place(dying)


async def test_two_instances_recovering_at_once_drive_each_order_once(world: World) -> None:
    await crash_after_recording(world)
    world.clock.advance(6)
    b, c = world.instance("o-b"), world.instance("o-c")
    reports = await asyncio.gather(b.recovery.tick(), c.recovery.tick())
    assert sorted(r.claimed for r in reports) == [0, 1]
    assert sum(r.finished for r in reports) == 1
    assert len(world.inventory.calls_of("Reserve")) == 1  # one driver made the calls
    assert len(world.payments.keys) == 1
    assert world.order().state is OrderState.CONFIRMED


async def test_a_slow_driver_that_lost_its_lease_writes_nothing(world: World) -> None:
    gate = world.inventory.gates["Commit"] = asyncio.Event()
    slow = world.instance("o-a")
    placed = await world.place(slow)
    await world.inventory.arrival("Commit").wait()  # stuck in its Commit call
    (drive,) = slow.saga.drives
    del world.inventory.gates["Commit"]  # the next caller is not held up
    world.clock.advance(6)  # the slow driver's lease runs out
    other = world.instance("o-b")
    report = await other.recovery.tick()
    assert (report.claimed, report.finished) == (1, 1)
    confirmed = world.order(placed.order.id)
    gate.set()  # the slow one's Commit goes through (idempotent), then its write loses
    ended = await drive
    assert ended == confirmed  # it follows what the winner stored
    assert world.order(placed.order.id) == confirmed
    assert world.stock.commits == [str(placed.order.id)]
    assert world.events() == [("order_confirmed", str(placed.order.id))]
    assert (
        world.metric("flotilla_orders_saga_steps_total", step="committing", result="lease_lost")
        == 1
    )


async def test_recovery_gives_back_what_is_still_stuck_with_a_backoff(world: World) -> None:
    world.inventory.down = {"Reserve"}
    await crash_after_recording(world)
    world.clock.advance(6)
    other = world.instance("o-b")
    report = await other.recovery.tick()
    assert (report.claimed, report.finished, report.unfinished) == (1, 0, 1)
    stuck = world.order()
    assert (stuck.lease_owner, stuck.retries) == (None, 1)
    assert stuck.next_attempt_at > world.clock()
    assert (await other.recovery.tick()).claimed == 0  # not due yet
    world.inventory.down = set()
    world.clock.advance(1)
    assert (await other.recovery.tick()).finished == 1
    assert world.order().state is OrderState.CONFIRMED
    assert world.metric("flotilla_orders_recovery_actions_total", kind="retry_scheduled") == 1
    assert world.metric("flotilla_orders_unfinished_orders") == 0


async def test_a_restarted_instance_releases_the_leases_of_its_previous_life(
    world: World,
) -> None:
    await crash_after_recording(world, "o-a")
    again = world.instance("o-a")
    assert await again.recovery.release_own_leases() == 1
    assert world.order().lease_owner is None
    report = await again.recovery.tick()  # due at once, no lease to wait for
    assert (report.claimed, report.finished) == (1, 1)


async def test_an_unfinished_order_past_its_reserve_deadline_is_released(world: World) -> None:
    await crash_after_recording(world)
    world.clock.advance(31)  # the instance was gone for longer than reserve_within_s
    other = world.instance("o-b")
    assert (await other.recovery.tick()).finished == 1
    order = world.order()
    assert (order.state, order.reason) == (
        OrderState.CANCELLED, CancelReason.INVENTORY_UNAVAILABLE,
    )  # fmt: skip
    assert world.inventory.calls_of("Reserve") == []  # never asked: too late
    assert world.inventory.calls_of("Release") == [str(order.id)]  # a tombstone
    assert order.step is SagaStep.DONE
    assert world.clock() - order.created_at > dt.timedelta(seconds=30)
