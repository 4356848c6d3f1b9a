"""The order's state machine, the line rules, the events' data, the backoff."""

from __future__ import annotations

import datetime as dt

import pytest

from flotilla_orders.domain import (
    CancelReason,
    IllegalTransition,
    InvalidLines,
    Order,
    OrderState,
    SagaStep,
    check_lines,
    event_of,
    final_event,
    new_order,
)
from services.orders.tests.fakes import T0

AT = T0 + dt.timedelta(seconds=1)


def placed(**overrides: object) -> Order:
    arguments: dict[str, object] = {
        "customer_id": "alice",
        "lines": [("apple", 2), ("pear", 1)],
        "currency": "EUR",
        "payment_account": "acc_0_aa",
        "shop_account": "acc_0_bb",
        "shop_owner": "shop",
        "now": T0,
        "reserve_within_s": 30.0,
        "lease_owner": "o-0",
        "lease_s": 10.0,
    } | overrides
    return new_order(**arguments)  # type: ignore[arg-type]


def test_a_new_order_is_reserving_and_leased_to_its_driver() -> None:
    order = placed()
    assert (order.state, order.step, order.version) == (OrderState.PENDING, SagaStep.RESERVING, 0)
    assert [(line.product_id, line.quantity, line.unit_price_minor) for line in order.lines] == [
        ("apple", 2, None), ("pear", 1, None),
    ]  # fmt: skip
    assert order.total_minor is None
    assert order.reserve_deadline == T0 + dt.timedelta(seconds=30)
    assert (order.lease_owner, order.lease_until) == ("o-0", T0 + dt.timedelta(seconds=10))
    assert order.payment_key == f"order:{order.id}:pay:1"
    assert order.refund_key == f"order:{order.id}:refund:1"
    assert order.reference == f"order {order.id}"
    assert not order.reserve_expired(T0 + dt.timedelta(seconds=29))
    assert order.reserve_expired(T0 + dt.timedelta(seconds=30))


def test_the_happy_path_records_prices_total_and_the_payment() -> None:
    order = placed()
    paying = order.reserved({"apple": 150, "pear": 200}, at=AT)
    assert (paying.step, paying.version, paying.total_minor) == (SagaStep.PAYING, 1, 500)
    assert [line.unit_price_minor for line in paying.lines] == [150, 200]
    again = paying.next_payment_attempt(at=AT)
    assert (again.step, again.pay_attempt, again.version) == (SagaStep.PAYING, 2, 2)
    assert again.payment_key.endswith(":pay:2")
    committing = again.paid("t-1", at=AT)
    assert (committing.step, committing.payment_transfer_id) == (SagaStep.COMMITTING, "t-1")
    confirmed = committing.confirm(at=AT)
    assert (confirmed.state, confirmed.step, confirmed.reason) == (
        OrderState.CONFIRMED, SagaStep.DONE, None,
    )  # fmt: skip
    assert (confirmed.lease_owner, confirmed.lease_until) == (None, None)
    assert confirmed.is_final


def test_compensations_carry_their_reason_to_the_end() -> None:
    committing = placed().reserved({"apple": 1, "pear": 1}, at=AT).paid("t-1", at=AT)
    refunding = committing.hold_lost(at=AT)
    assert (refunding.step, refunding.reason) == (
        SagaStep.REFUNDING, CancelReason.RESERVATION_EXPIRED,
    )  # fmt: skip
    assert refunding.next_refund_attempt(at=AT).refund_key.endswith(":refund:2")
    releasing = refunding.refunded("t-2", at=AT)
    cancelled = releasing.cancel(at=AT)
    assert (cancelled.state, cancelled.reason, cancelled.refund_transfer_id) == (
        OrderState.CANCELLED, CancelReason.RESERVATION_EXPIRED, "t-2",
    )  # fmt: skip
    out = placed().out_of_stock(at=AT)
    assert (out.state, out.reason, out.total_minor) == (
        OrderState.CANCELLED, CancelReason.OUT_OF_STOCK, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    "move",
    [
        lambda o: o.paid("t", at=AT),  # RESERVING cannot be paid
        lambda o: o.confirm(at=AT),
        lambda o: o.cancel(at=AT),  # nothing to release yet, no reason
        lambda o: o.hold_lost(at=AT),
        lambda o: o.refunded("t", at=AT),
        lambda o: (
            o.reserved({"apple": 1, "pear": 1}, at=AT)
            .paid("t", at=AT)
            .hold_lost(at=AT)
            .release(CancelReason.PAYMENT_REFUSED, at=AT)
        ),  # the refund comes first
        lambda o: o.next_payment_attempt(at=AT),
        lambda o: o.next_refund_attempt(at=AT),
        lambda o: o.out_of_stock(at=AT).release(CancelReason.OUT_OF_STOCK, at=AT),  # final
        lambda o: o.reserved({"apple": 1}, at=AT),  # a price is missing
        lambda o: o.reserved({"apple": 1, "pear": 1}, at=AT).out_of_stock(at=AT),
        # Only a CONFIRMED order is refunded, and only a refund in course ends as one.
        lambda o: o.start_refund(at=AT, lease_owner="o-0", lease_until=AT),
        lambda o: o.out_of_stock(at=AT).start_refund(at=AT, lease_owner="o-0", lease_until=AT),
        lambda o: o.refund_paid("t", at=AT),
        lambda o: o.refund_refused("insufficient-funds", at=AT),
    ],
)
def test_illegal_moves_are_refused(move: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - IllegalTransition, or the missing price
        move(placed())  # type: ignore[operator]


def test_illegal_transition_names_both_steps() -> None:
    with pytest.raises(IllegalTransition, match="from reserving to committing"):
        placed().paid("t", at=AT)


@pytest.mark.parametrize(
    ("lines", "complaint"),
    [
        ([], "1 to 100 lines"),
        ([(f"p{i}", 1) for i in range(101)], "1 to 100 lines"),
        ([("apple", 0)], "between 1 and 10000"),
        ([("apple", -1)], "between 1 and 10000"),
        ([("apple", 10_001)], "between 1 and 10000"),
        ([("apple", True)], "an integer"),
        ([("apple", 1.5)], "an integer"),
        ([("apple", 1), ("apple", 2)], "on two lines"),
        ([("", 1)], "1 to 64 characters"),
        ([("x" * 65, 1)], "1 to 64 characters"),
    ],
)
def test_lines_no_order_may_have(lines: list[tuple[str, int]], complaint: str) -> None:
    with pytest.raises(InvalidLines, match=complaint):
        check_lines(lines)


def test_lines_at_the_limits_are_fine() -> None:
    check_lines([(f"p{i}", 10_000) for i in range(100)])
    check_lines([("x" * 64, 1)])


def test_the_final_events_carry_the_contract_fields() -> None:
    confirmed = placed().reserved({"apple": 150, "pear": 200}, at=AT).paid("t-1", at=AT)
    confirmed = confirmed.confirm(at=AT)
    assert final_event(confirmed) == (
        "order_confirmed",
        {
            "order_id": str(confirmed.id),
            "customer_id": "alice",
            "lines": [
                {"product_id": "apple", "quantity": 2, "unit_price_minor": 150},
                {"product_id": "pear", "quantity": 1, "unit_price_minor": 200},
            ],
            "total_minor": 500,
            "currency": "EUR",
            "payment_transfer_id": "t-1",
        },
    )
    cancelled = placed().out_of_stock(at=AT)
    assert final_event(cancelled) == (
        "order_cancelled",
        {
            "order_id": str(cancelled.id),
            "customer_id": "alice",
            "reason": "out-of-stock",
            "refund_transfer_id": None,
        },
    )
    with pytest.raises(ValueError, match="not final"):
        final_event(placed())


def confirmed_order() -> Order:
    return placed().reserved({"apple": 150, "pear": 200}, at=AT).paid("t-1", at=AT).confirm(at=AT)


def test_a_confirmed_order_is_refunded_under_a_lease_then_refunded() -> None:
    confirmed = confirmed_order()
    refunding = confirmed.start_refund(at=AT, lease_owner="o-1", lease_until=AT)
    assert (refunding.state, refunding.step, refunding.version) == (
        OrderState.REFUNDING, SagaStep.REFUNDING_ORDER, confirmed.version + 1,
    )  # fmt: skip
    assert (refunding.lease_owner, refunding.refund_key) == (
        "o-1",
        f"order:{confirmed.id}:refund:1",
    )
    assert not refunding.is_final
    with pytest.raises(IllegalTransition):  # one refund in course at a time
        refunding.start_refund(at=AT, lease_owner="o-1", lease_until=AT)
    done = refunding.refund_paid("t-2", at=AT)
    assert (done.state, done.step, done.refund_transfer_id, done.lease_owner) == (
        OrderState.REFUNDED, SagaStep.DONE, "t-2", None,
    )  # fmt: skip
    with pytest.raises(IllegalTransition):  # refunded once
        done.start_refund(at=AT, lease_owner="o-1", lease_until=AT)
    assert event_of(refunding, done) == (
        "order_refunded",
        {
            "order_id": str(done.id),
            "customer_id": "alice",
            "refund_transfer_id": "t-2",
            "total_minor": 500,
            "currency": "EUR",
            "lines": [
                {"product_id": "apple", "quantity": 2, "unit_price_minor": 150},
                {"product_id": "pear", "quantity": 1, "unit_price_minor": 200},
            ],
        },
    )
    assert event_of(confirmed, refunding) is None  # nothing to tell while it runs


def test_a_refused_refund_is_confirmed_again_with_the_next_key_and_tells_nothing() -> None:
    refunding = confirmed_order().start_refund(at=AT, lease_owner="o-1", lease_until=AT)
    refused = refunding.refund_refused("insufficient-funds", at=AT)
    assert (refused.state, refused.step, refused.refund_refusal, refused.lease_owner) == (
        OrderState.CONFIRMED, SagaStep.DONE, "insufficient-funds", None,
    )  # fmt: skip
    assert event_of(refunding, refused) is None
    again = refused.start_refund(at=AT, lease_owner="o-1", lease_until=AT)
    assert (again.refund_refusal, again.refund_key) == (None, f"order:{again.id}:refund:2")
