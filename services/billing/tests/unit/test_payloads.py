"""The orders events' data as billing reads it: what breaks the contract is named."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flotilla_billing.entrypoints.payloads import (
    OrderConfirmedPayload,
    OrderRefundedPayload,
    refusal_of,
)

GOOD: dict[str, Any] = {
    "order_id": "5d0c8a53-55a4-4c64-9f3b-1c1b7ad0c111",
    "customer_id": "alice",
    "lines": [{"product_id": "apple", "quantity": 2, "unit_price_minor": 150}],
    "total_minor": 300,
    "currency": "EUR",
    "payment_transfer_id": "t-1",
}


def test_a_good_payload_reads_and_unknown_fields_are_ignored() -> None:
    order = OrderConfirmedPayload.model_validate({**GOOD, "coupon": "x"}).domain()
    assert order.total_minor == 300
    assert order.lines[0].product_id == "apple"
    refund = OrderRefundedPayload.model_validate({**GOOD, "refund_transfer_id": "t-2"}).domain()
    assert refund.refund_transfer_id == "t-2"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"total_minor": 301}, "add up to 300"),
        ({"total_minor": "300"}, "total_minor"),
        ({"currency": "XXX"}, "currency"),
        ({"lines": []}, "lines"),
        ({"lines": [{"product_id": "a", "quantity": 0, "unit_price_minor": 1}]}, "quantity"),
        ({"lines": [{"product_id": "a", "quantity": 1, "unit_price_minor": 1.5}]}, "unit_price"),
        ({"order_id": None}, "order_id"),
        (
            {"lines": [{"product_id": "a", "quantity": 1, "unit_price_minor": 150}] * 2},
            "twice",
        ),
    ],
)
def test_a_broken_payload_is_refused_with_its_first_problem(
    change: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        OrderConfirmedPayload.model_validate({**GOOD, **change})
    assert reason in refusal_of(caught.value)


def test_a_refund_needs_its_transfer() -> None:
    with pytest.raises(ValidationError) as caught:
        OrderRefundedPayload.model_validate(GOOD)
    assert refusal_of(caught.value).startswith("refund_transfer_id:")
