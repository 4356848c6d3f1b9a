"""Every path of the checkout saga, against fakes: confirmed; cancelled for out of stock,
insufficient funds, a refused or unavailable payment, an unreachable inventory; retries
with the same key when an answer is lost, a new key when nothing moved; an expired hold
refunded and released."""

from __future__ import annotations

import asyncio

from flotilla_orders.domain import CancelReason, OrderState, SagaStep
from flotilla_orders.service_layer.ports import ReservationState, StockRefusal
from services.orders.tests.fakes import expire_the_hold_while_paying
from services.orders.tests.unit.world import World


async def test_an_order_is_reserved_paid_committed_and_confirmed(world: World) -> None:
    one = world.instance()
    placed = await world.place(one)
    assert not placed.replayed
    assert (placed.order.state, placed.order.step) == (OrderState.PENDING, SagaStep.RESERVING)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert (order.state, order.step, order.reason) == (OrderState.CONFIRMED, SagaStep.DONE, None)
    assert [(line.product_id, line.unit_price_minor) for line in order.lines] == [
        ("apple", 150), ("pear", 200),
    ]  # fmt: skip
    assert (order.total_minor, order.currency) == (500, "EUR")
    assert (order.lease_owner, order.lease_until) == (None, None)
    # The money moved once, on the customer's behalf, with the documented key.
    (paid,) = world.bank.applied_transfers()
    assert order.payment_transfer_id == paid.id
    assert (paid.from_account, paid.to_account, paid.amount_minor) == (
        world.wallet,
        world.shop,
        500,
    )
    assert (paid.initiator, paid.reference) == ("alice", f"order {order.id}")
    assert world.payments.keys == [f"order:{order.id}:pay:1"]
    assert (world.bank.balance(world.wallet), world.bank.balance(world.shop)) == (9_500, 500)
    # The stock was held once with the configured hold, then sold.
    assert world.stock.holds == world.stock.commits == [str(order.id)]
    assert world.inventory.hold_seconds == [60]
    assert (world.stock.products["apple"].on_hand, world.stock.products["pear"].on_hand) == (8, 9)
    assert world.stock.held() == 0
    assert world.events() == [("order_confirmed", str(order.id))]
    assert world.store.events[0].data["payment_transfer_id"] == paid.id
    assert world.metric("flotilla_orders_sagas_total", state="CONFIRMED", reason="") == 1


async def test_out_of_stock_cancels_without_touching_money(world: World) -> None:
    one = world.instance()
    placed = await world.place(one, (("apple", 11), ("pear", 1)))
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert (order.state, order.reason) == (OrderState.CANCELLED, CancelReason.OUT_OF_STOCK)
    assert order.total_minor is None
    assert world.payments.keys == []
    assert world.bank.applied == []
    assert world.stock.holds == []
    assert world.inventory.calls_of("Release") == []  # nothing was held
    assert world.events() == [("order_cancelled", str(order.id))]
    assert world.store.events[0].data == {
        "order_id": str(order.id), "customer_id": "alice",
        "reason": "out-of-stock", "refund_transfer_id": None,
    }  # fmt: skip


async def test_insufficient_funds_releases_the_stock(world: World) -> None:
    world.bank.accounts[world.wallet].balance = 499
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert (order.state, order.reason) == (OrderState.CANCELLED, CancelReason.INSUFFICIENT_FUNDS)
    assert order.payment_transfer_id is None
    assert world.bank.applied == []
    assert world.bank.balance(world.wallet) == 499
    assert world.stock.releases == [str(order.id)]
    assert world.stock.held() == 0
    assert world.stock.products["apple"].on_hand == 10
    assert world.events() == [("order_cancelled", str(order.id))]


async def test_another_refusal_is_payment_refused(world: World) -> None:
    one = world.instance()
    placed = await world.place(one)
    del world.bank.accounts[world.shop]  # payments answers 404 account-not-found
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert (order.state, order.reason) == (OrderState.CANCELLED, CancelReason.PAYMENT_REFUSED)
    assert world.bank.applied == []
    assert world.stock.held() == 0


async def test_an_aborted_payment_is_tried_again_with_a_new_key(world: World) -> None:
    world.bank.abort_next = 1  # 503 transfer-aborted: nothing moved
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert order.state is OrderState.CONFIRMED
    assert order.pay_attempt == 2
    assert world.payments.keys == [f"order:{order.id}:pay:1", f"order:{order.id}:pay:2"]
    assert len(world.bank.applied) == 1
    assert world.bank.balance(world.wallet) == 9_500
    assert len(world.clock.sleeps) == 1  # the backoff before the new key


async def test_payments_unavailable_for_every_attempt_cancels(world: World) -> None:
    world.bank.abort_next = 3
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert (order.state, order.reason) == (OrderState.CANCELLED, CancelReason.PAYMENT_UNAVAILABLE)
    assert world.payments.keys == [f"order:{order.id}:pay:{n}" for n in (1, 2, 3)]
    assert world.bank.applied == []
    assert world.stock.held() == 0
    assert world.stock.releases == [str(order.id)]


async def test_a_lost_answer_is_asked_again_with_the_same_key(world: World) -> None:
    world.bank.lose_next = 1  # the transfer happens; its answer does not arrive
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert order.state is OrderState.CONFIRMED
    assert world.payments.keys == [f"order:{order.id}:pay:1"] * 2
    assert len(world.bank.applied) == 1  # never two payments
    assert world.bank.balance(world.wallet) == 9_500


async def test_no_answer_at_all_is_asked_again_with_the_same_key(world: World) -> None:
    world.bank.fail_next = 3
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert order.state is OrderState.CONFIRMED
    assert world.payments.keys == [f"order:{order.id}:pay:1"] * 4
    assert len(world.bank.applied) == 1
    # Backoff with full jitter under a doubling ceiling (retry_initial_s 0.1).
    assert len(world.clock.sleeps) == 3
    assert all(0 <= s <= 0.1 * 2**n for n, s in enumerate(world.clock.sleeps))


async def test_a_pending_transfer_is_asked_about_until_it_is_final(world: World) -> None:
    world.bank.pend_next = 1  # 202: the coordinator has not decided yet
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert order.state is OrderState.CONFIRMED
    assert world.payments.keys == [f"order:{order.id}:pay:1"] * 2
    assert len(world.bank.applied) == 1


async def test_a_hold_that_expired_while_paying_is_refunded_and_released(world: World) -> None:
    expire_the_hold_while_paying(world.bank, world.stock)
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert (order.state, order.reason) == (OrderState.CANCELLED, CancelReason.RESERVATION_EXPIRED)
    paid, refund = world.bank.applied_transfers()
    assert (order.payment_transfer_id, order.refund_transfer_id) == (paid.id, refund.id)
    assert (refund.from_account, refund.to_account, refund.amount_minor) == (
        world.shop, world.wallet, 500,
    )  # fmt: skip
    assert (refund.initiator, refund.reference) == ("shop", f"refund of order {order.id}")
    assert world.payments.keys_of(order.id, "refund") == [f"order:{order.id}:refund:1"]
    assert (world.bank.balance(world.wallet), world.bank.balance(world.shop)) == (10_000, 0)
    assert world.stock.commits == []
    assert world.stock.state_of(str(order.id)) is ReservationState.EXPIRED
    assert world.inventory.calls_of("Release") == [str(order.id)]  # harmless, and done
    assert world.stock.held() == 0
    assert world.events() == [("order_cancelled", str(order.id))]
    assert world.store.events[0].data["refund_transfer_id"] == refund.id


async def test_an_aborted_refund_is_tried_again_with_a_new_key(world: World) -> None:
    expire_the_hold_while_paying(world.bank, world.stock)
    expire = world.bank.before_transfer
    aborted_once: list[str] = []

    def abort_the_first_refund(reference: str) -> None:
        assert expire is not None
        expire(reference)
        if reference.startswith("refund") and not aborted_once:
            aborted_once.append(reference)
            world.bank.abort_next = 1

    world.bank.before_transfer = abort_the_first_refund
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert (order.state, order.reason) == (OrderState.CANCELLED, CancelReason.RESERVATION_EXPIRED)
    assert order.refund_attempt == 2
    assert world.payments.keys_of(order.id, "refund") == [
        f"order:{order.id}:refund:1", f"order:{order.id}:refund:2",
    ]  # fmt: skip
    assert world.bank.balance(world.wallet) == 10_000


async def test_an_unanswered_reserve_is_given_up_at_its_deadline(world: World) -> None:
    world.inventory.down = {"Reserve"}
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert (order.state, order.reason) == (
        OrderState.CANCELLED, CancelReason.INVENTORY_UNAVAILABLE,
    )  # fmt: skip
    assert len(world.inventory.calls_of("Reserve")) > 1
    assert world.clock() >= order.reserve_deadline
    assert world.payments.keys == []
    # The Release left a tombstone: a Reserve arriving late is refused.
    late = world.stock.reserve(str(order.id), [("apple", 2)])
    assert (late.state, late.refusal) == (ReservationState.REFUSED, StockRefusal.ALREADY_RELEASED)
    assert world.stock.held() == 0


async def test_a_hold_whose_answers_were_all_lost_is_released_at_the_deadline(
    world: World,
) -> None:
    world.inventory.lose["Reserve"] = 1_000  # the stock is held, nobody hears of it
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert order.reason is CancelReason.INVENTORY_UNAVAILABLE
    assert world.stock.holds == [str(order.id)]  # held once, however often asked
    assert world.stock.releases == [str(order.id)]
    assert world.stock.held() == 0


async def test_a_lost_reserve_answer_is_asked_again(world: World) -> None:
    world.inventory.lose["Reserve"] = 1
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    assert world.order(placed.order.id).state is OrderState.CONFIRMED
    assert world.stock.holds == [str(placed.order.id)]
    assert len(world.inventory.calls_of("Reserve")) == 2


async def test_commit_and_release_are_retried_until_answered(world: World) -> None:
    world.inventory.fail["Commit"] = 2
    world.inventory.lose["Commit"] = 1  # and one that happened unheard
    one = world.instance()
    placed = await world.place(one)
    await world.drive_out(one)
    assert world.order(placed.order.id).state is OrderState.CONFIRMED
    assert len(world.inventory.calls_of("Commit")) == 4
    assert world.stock.commits == [str(placed.order.id)]

    world.bank.accounts[world.wallet].balance = 0
    world.inventory.fail["Release"] = 2
    other = await world.place(one, key="k-2")
    await world.drive_out(one)
    cancelled = world.order(other.order.id)
    assert cancelled.reason is CancelReason.INSUFFICIENT_FUNDS
    assert len(world.inventory.calls_of("Release")) == 3
    assert world.stock.held() == 0


async def test_a_held_line_priced_in_another_currency_cannot_be_paid(world: World) -> None:
    one = world.instance()
    placed = await world.place(one)
    world.stock.products["pear"].currency = "USD"  # changed after the order was checked
    await world.drive_out(one)
    order = world.order(placed.order.id)
    assert (order.state, order.reason) == (OrderState.CANCELLED, CancelReason.PAYMENT_REFUSED)
    assert world.payments.keys == []
    assert world.stock.held() == 0


async def test_post_may_wait_for_the_outcome(world: World) -> None:
    one = world.instance(answer_within_s=10.0)
    placed = await world.place(one)
    assert placed.order.state is OrderState.CONFIRMED  # no retry: done well within the wait


async def test_the_drive_goes_on_after_the_answer(world: World) -> None:
    gate = world.inventory.gates["Commit"] = asyncio.Event()
    one = world.instance(answer_within_s=0.0)
    placed = await world.place(one)
    assert placed.order.state is OrderState.PENDING
    await world.inventory.arrival("Commit").wait()
    assert world.order(placed.order.id).step is SagaStep.COMMITTING
    gate.set()
    await world.drive_out(one)
    assert world.order(placed.order.id).state is OrderState.CONFIRMED
