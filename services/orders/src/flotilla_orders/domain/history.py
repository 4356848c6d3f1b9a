"""The order history: a read model made only of what events say.

Three kinds of fact, each stored as its event states it and keyed by what it is about: how
an order ended (`order_confirmed` / `order_cancelled`), which confirmed orders were
refunded since (`order_refunded`: the entry shows REFUNDED) and which transfers committed
(`transfer_committed`). An entry's payment state is joined at read time, so the facts
may arrive in any order, and more than once, and the answer is the same:

- `refunded`: the order's refund transfer has committed;
- `paid`: the order's payment transfer has committed (and no refund has);
- `unpaid`: otherwise (nothing was paid, or the news has not arrived yet).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from flotilla_orders.domain.events import CANCELLED, CONFIRMED, REFUNDED, SERVICE
from flotilla_orders.domain.order import OrderLine, OrderState

__all__ = [
    "CommittedTransfer",
    "HistoryEntry",
    "InvalidEventData",
    "OrderOutcome",
    "OrderRefund",
    "PaymentState",
    "outcome_of",
    "payment_state",
    "refund_of",
    "refunded",
    "transfer_of",
]


class PaymentState(enum.StrEnum):
    PAID = "paid"
    REFUNDED = "refunded"
    UNPAID = "unpaid"


class InvalidEventData(ValueError):
    """An event whose data is not what its contract says (the consumer retries it, then
    dead-letters it)."""


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    order_id: str
    customer_id: str
    state: OrderState
    finished_at: dt.datetime
    reason: str | None = None
    total_minor: int | None = None
    currency: str | None = None
    lines: tuple[OrderLine, ...] | None = None
    payment_transfer_id: str | None = None
    refund_transfer_id: str | None = None


@dataclass(frozen=True, slots=True)
class OrderRefund:
    """A confirmed order's money was given back (`order_refunded`)."""

    order_id: str
    refund_transfer_id: str
    refunded_at: dt.datetime


@dataclass(frozen=True, slots=True)
class CommittedTransfer:
    transfer_id: str
    amount_minor: int
    currency: str
    committed_at: dt.datetime


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    outcome: OrderOutcome
    payment_state: PaymentState


def _text(data: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidEventData(f"{name} is not a non-empty string")
    return value


def _integer(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEventData(f"{name} is not an integer")
    return value


def _lines(data: Mapping[str, Any]) -> tuple[OrderLine, ...]:
    raw = data.get("lines")
    if not isinstance(raw, list) or not raw:
        raise InvalidEventData("lines is not a list of lines")
    lines: list[OrderLine] = []
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidEventData("a line is not an object")
        product_id = _text(item, "product_id")
        assert product_id is not None
        lines.append(
            OrderLine(product_id, _integer(item, "quantity"), _integer(item, "unit_price_minor"))
        )
    return tuple(lines)


def _name(event_type: str) -> str | None:
    prefix = f"flotilla.{SERVICE}."
    return event_type.removeprefix(prefix) if event_type.startswith(prefix) else None


def outcome_of(event_type: str, data: Mapping[str, Any], at: dt.datetime) -> OrderOutcome | None:
    """What an orders event says about how an order ended; None for an event of ours that
    is not about that."""
    name = _name(event_type)
    if name not in (CONFIRMED, CANCELLED):
        return None
    order_id, customer_id = _text(data, "order_id"), _text(data, "customer_id")
    assert order_id is not None
    assert customer_id is not None
    if name == CONFIRMED:
        return OrderOutcome(
            order_id=order_id,
            customer_id=customer_id,
            state=OrderState.CONFIRMED,
            finished_at=at,
            total_minor=_integer(data, "total_minor"),
            currency=_text(data, "currency"),
            lines=_lines(data),
            payment_transfer_id=_text(data, "payment_transfer_id"),
        )
    return OrderOutcome(
        order_id=order_id,
        customer_id=customer_id,
        state=OrderState.CANCELLED,
        finished_at=at,
        reason=_text(data, "reason"),
        refund_transfer_id=_text(data, "refund_transfer_id", optional=True),
    )


def refund_of(event_type: str, data: Mapping[str, Any], at: dt.datetime) -> OrderRefund | None:
    """What an `order_refunded` event says (its whole contract is checked: billing reads
    the rest); None for any other event."""
    if _name(event_type) != REFUNDED:
        return None
    order_id, transfer_id = _text(data, "order_id"), _text(data, "refund_transfer_id")
    assert order_id is not None
    assert transfer_id is not None
    _text(data, "customer_id")
    _text(data, "currency")
    _integer(data, "total_minor")
    _lines(data)
    return OrderRefund(order_id, transfer_id, at)


def refunded(outcome: OrderOutcome, refund: OrderRefund | None) -> OrderOutcome:
    """How a confirmed order stands once its refund is known: REFUNDED, with its transfer."""
    if refund is None or outcome.state is not OrderState.CONFIRMED:
        return outcome
    return replace(outcome, state=OrderState.REFUNDED, refund_transfer_id=refund.refund_transfer_id)


def transfer_of(data: Mapping[str, Any], at: dt.datetime) -> CommittedTransfer:
    """What a `flotilla.payments.transfer_committed` event says."""
    transfer_id, currency = _text(data, "transfer_id"), _text(data, "currency")
    assert transfer_id is not None
    assert currency is not None
    return CommittedTransfer(transfer_id, _integer(data, "amount_minor"), currency, at)


def payment_state(outcome: OrderOutcome, committed: frozenset[str]) -> PaymentState:
    """`committed`: which of the order's transfers are known to have committed."""
    if outcome.refund_transfer_id is not None and outcome.refund_transfer_id in committed:
        return PaymentState.REFUNDED
    if outcome.payment_transfer_id is not None and outcome.payment_transfer_id in committed:
        return PaymentState.PAID
    return PaymentState.UNPAID
