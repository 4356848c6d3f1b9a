"""Refunds of confirmed orders, against fakes: the money back once with the documented
key and the `order_refunded` event; only a CONFIRMED order, only with `orders:refund`;
asking again starts nothing; a refusal leaves the order CONFIRMED; an aborted transfer
is tried again with a new key; a process that dies anywhere on the way is finished by
recovery with one refund."""

from __future__ import annotations

import asyncio

import pytest

from flotilla_kit.testing import principal as who
from flotilla_orders.domain import Order, OrderState, SagaStep
from flotilla_orders.service_layer.errors import (
    NotAllowed,
    OrderNotFound,
    OrderNotRefundable,
    RefundRefused,
)
from flotilla_orders.service_layer.faults import FaultPoint
from services.orders.tests.fakes import CrashAt, SimulatedCrash
from services.orders.tests.unit.test_recovery import finish_by_recovery
from services.orders.tests.unit.world import Instance, World

P = FaultPoint


async def confirmed(world: World, instance: Instance | None = None) -> Order:
    """An order placed and driven to CONFIRMED (alice paid 500 into the shop's account)."""
    one = instance or world.instance("o-0")
    placed = await world.place(one)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert order.state is OrderState.CONFIRMED
    return order


async def test_support_refunds_a_confirmed_order_in_full(world: World) -> None:
    one = world.instance(answer_within_s=5.0)
    order = await confirmed(world, one)
    on_hand = world.stock.products["apple"].on_hand
    refund = await world.refund(one, order)
    await world.drive_out(one)
    assert not refund.replayed
    done = world.order(order.id)
    assert refund.order == done
    assert (done.state, done.step, done.reason) == (OrderState.REFUNDED, SagaStep.DONE, None)
    assert (done.lease_owner, done.lease_until, done.refund_refusal) == (None, None, None)
    # The money came back once: from the shop's account, on its owner's behalf, to the
    # account that paid, under a key derived from the order.
    _, back = world.bank.applied_transfers()
    assert done.refund_transfer_id == back.id
    assert (back.from_account, back.to_account, back.amount_minor, back.currency) == (
        world.shop, world.wallet, 500, "EUR",
    )  # fmt: skip
    assert (back.initiator, back.reference) == ("shop", f"refund of order {order.id}")
    assert world.payments.keys_of(order.id, "refund") == [f"order:{order.id}:refund:1"]
    assert (world.bank.balance(world.wallet), world.bank.balance(world.shop)) == (10_000, 0)
    assert world.stock.products["apple"].on_hand == on_hand  # stock is not returned
    assert world.events() == [("order_confirmed", str(order.id)), ("order_refunded", str(order.id))]
    assert world.store.events[1].data == {
        "order_id": str(order.id),
        "customer_id": "alice",
        "refund_transfer_id": back.id,
        "total_minor": 500,
        "currency": "EUR",
        "lines": [
            {"product_id": "apple", "quantity": 2, "unit_price_minor": 150},
            {"product_id": "pear", "quantity": 1, "unit_price_minor": 200},
        ],
    }
    assert world.metric("flotilla_orders_refunds_total", outcome="refunded") == 1
    # A refund is not a second end of the saga.
    assert world.metric("flotilla_orders_sagas_total", state="REFUNDED", reason="") == 0


async def test_an_admin_may_refund_too(world: World) -> None:
    one = world.instance()
    order = await confirmed(world, one)
    await world.refund(one, order, principal=who("root", "admin"))
    await world.drive_out(one)
    assert world.order(order.id).state is OrderState.REFUNDED


async def test_a_customer_may_not_refund_even_their_own_order(world: World) -> None:
    one = world.instance()
    order = await confirmed(world, one)
    with pytest.raises(NotAllowed):
        await world.refund(one, order, principal=world.alice)
    assert world.order(order.id) == order
    assert len(world.bank.applied) == 1


async def test_only_a_confirmed_order_can_be_refunded(world: World) -> None:
    one = world.instance()
    pending = (await world.place(one, key="k-pending")).order  # its drive has not run yet
    with pytest.raises(OrderNotRefundable) as refused:
        await world.refund(one, pending)
    assert refused.value.state == "PENDING"
    await world.drive_out(one)
    cancelled = (await world.place(one, (("apple", 99),), key="k-cancelled")).order
    await world.drive_out(one)
    assert world.order(cancelled.id).state is OrderState.CANCELLED
    with pytest.raises(OrderNotRefundable) as refused:
        await world.refund(one, cancelled)
    assert refused.value.state == "CANCELLED"
    for missing in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(OrderNotFound):
            await one.refunds.refund(principal=world.support, order_id=missing)
    assert [e for e, _ in world.events()] == ["order_confirmed", "order_cancelled"]
    assert len(world.bank.applied) == 1  # the pending order's payment, nothing back


async def test_asking_again_replays_the_order_and_pays_back_once(world: World) -> None:
    one = world.instance()
    order = await confirmed(world, one)
    refund_key = f"order:{order.id}:refund:1"
    world.payments.gates[refund_key] = gate = asyncio.Event()
    first = await world.refund(one, order)
    assert first.order.state is OrderState.REFUNDING
    again = await world.refund(one, order)  # while REFUNDING (payments holds the transfer)
    assert (again.replayed, again.order.state) == (True, OrderState.REFUNDING)
    gate.set()
    await world.drive_out(one)
    last = await world.refund(one, order)  # once REFUNDED
    assert (last.replayed, last.order.state) == (True, OrderState.REFUNDED)
    assert world.payments.keys_of(order.id, "refund") == [refund_key]
    assert len(world.bank.applied) == 2  # the payment and one refund
    assert [e for e, _ in world.events()] == ["order_confirmed", "order_refunded"]


async def test_a_refused_refund_leaves_the_order_confirmed_until_asked_again(
    world: World,
) -> None:
    one = world.instance(answer_within_s=5.0)
    order = await confirmed(world, one)
    world.bank.accounts[world.shop].balance = 100  # the shop cannot pay 500 back
    with pytest.raises(RefundRefused) as refused:
        await world.refund(one, order)
    assert refused.value.refusal == "insufficient-funds"
    stays = world.order(order.id)
    assert (stays.state, stays.step, stays.lease_owner) == (
        OrderState.CONFIRMED, SagaStep.DONE, None,
    )  # fmt: skip
    assert (stays.refund_refusal, stays.refund_transfer_id) == ("insufficient-funds", None)
    assert [e for e, _ in world.events()] == ["order_confirmed"]  # nothing to tell
    assert world.metric("flotilla_orders_refunds_total", outcome="refused") == 1
    # Once the shop can pay, asking again refunds, under a new key (the first one's
    # refusal is final at payments).
    world.bank.accounts[world.shop].balance = 500
    refund = await world.refund(one, order)
    await world.drive_out(one)
    assert not refund.replayed
    done = world.order(order.id)
    assert (done.state, done.refund_refusal) == (OrderState.REFUNDED, None)
    assert world.payments.keys_of(order.id, "refund") == [
        f"order:{order.id}:refund:1", f"order:{order.id}:refund:2",
    ]  # fmt: skip
    assert world.bank.balance(world.wallet) == 10_000


async def test_an_aborted_refund_is_tried_again_with_a_new_key(world: World) -> None:
    one = world.instance()
    order = await confirmed(world, one)
    world.bank.abort_next = 1
    await world.refund(one, order)
    await world.drive_out(one)
    assert world.order(order.id).state is OrderState.REFUNDED
    assert world.payments.keys_of(order.id, "refund") == [
        f"order:{order.id}:refund:1", f"order:{order.id}:refund:2",
    ]  # fmt: skip
    assert len(world.bank.applied) == 2


async def test_a_lost_answer_is_asked_again_with_the_same_key(world: World) -> None:
    one = world.instance()
    order = await confirmed(world, one)
    world.bank.lose_next = 1
    await world.refund(one, order)
    await world.drive_out(one)
    assert world.order(order.id).state is OrderState.REFUNDED
    assert world.payments.keys_of(order.id, "refund") == [f"order:{order.id}:refund:1"] * 2
    assert len(world.bank.applied) == 2


CRASHES = [
    P.AFTER_REFUNDING_RECORDED,
    P.AFTER_REFUND_CALL,
    P.AFTER_ATTEMPT_RECORDED,
    P.AFTER_FINAL_RECORDED,
]


@pytest.mark.parametrize("point", CRASHES, ids=[p.value for p in CRASHES])
async def test_a_refund_that_died_anywhere_is_finished_by_recovery_once(
    world: World, point: FaultPoint
) -> None:
    order = await confirmed(world)
    if point is P.AFTER_ATTEMPT_RECORDED:
        world.bank.abort_next = 1
    money = world.bank.total()
    faults = CrashAt(point)
    dying = world.instance("o-a", faults=faults)
    crashes_in_the_request = point is P.AFTER_REFUNDING_RECORDED
    if crashes_in_the_request:
        with pytest.raises(SimulatedCrash):
            await world.refund(dying, order)
    else:
        await world.refund(dying, order)
        await world.drive_out(dying)  # until it 'dies'
    assert faults.crashed
    stuck = world.order(order.id)
    other = world.instance("o-b")
    if not stuck.is_final:
        assert stuck.state is OrderState.REFUNDING
        assert (await other.recovery.tick()).claimed == 0  # the dead driver's lease holds
        world.clock.advance(6)  # past it
    await finish_by_recovery(world, other)
    done = world.order(order.id)
    assert done.state is OrderState.REFUNDED
    assert len(world.bank.applied) == 2  # the payment and exactly one refund
    assert world.bank.total() == money
    assert world.bank.balance(world.wallet) == 10_000
    assert world.events() == [("order_confirmed", str(order.id)), ("order_refunded", str(order.id))]
    assert world.store.events[1].data["refund_transfer_id"] == done.refund_transfer_id
