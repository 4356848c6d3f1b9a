"""What the orders service tells the world, as the `data` of its events (the shop's
events contract): built from an order in its final state, written in the same
transaction as that state."""

from __future__ import annotations

from typing import Any

from flotilla_orders.domain.order import Order, OrderState

__all__ = ["CANCELLED", "CONFIRMED", "REFUNDED", "SERVICE", "event_of", "final_event"]

SERVICE = "orders"
CONFIRMED = "order_confirmed"
CANCELLED = "order_cancelled"
REFUNDED = "order_refunded"


def _lines(order: Order) -> list[dict[str, Any]]:
    return [
        {
            "product_id": line.product_id,
            "quantity": line.quantity,
            "unit_price_minor": line.unit_price_minor,
        }
        for line in order.lines
    ]


def event_of(before: Order, after: Order) -> tuple[str, dict[str, Any]] | None:
    """The event a stored transition `before -> after` tells the world, if any: the end of
    a saga (CONFIRMED, CANCELLED) and a refund (REFUNDED). A refused refund tells nothing:
    the order was CONFIRMED and still is."""
    if not after.is_final or before.is_final:
        return None
    if after.state is OrderState.CONFIRMED and before.state is OrderState.REFUNDING:
        return None
    return final_event(after)


def final_event(order: Order) -> tuple[str, dict[str, Any]]:
    """(event name, data) of an order that has just become CONFIRMED, CANCELLED or
    REFUNDED."""
    if order.state is OrderState.CONFIRMED:
        return CONFIRMED, {
            "order_id": str(order.id),
            "customer_id": order.customer_id,
            "lines": _lines(order),
            "total_minor": order.total_minor,
            "currency": order.currency,
            "payment_transfer_id": order.payment_transfer_id,
        }
    if order.state is OrderState.CANCELLED:
        return CANCELLED, {
            "order_id": str(order.id),
            "customer_id": order.customer_id,
            "reason": order.reason.value if order.reason else None,
            "refund_transfer_id": order.refund_transfer_id,
        }
    if order.state is OrderState.REFUNDED:
        # Billing issues a credit note from this alone: it carries all the note needs.
        return REFUNDED, {
            "order_id": str(order.id),
            "customer_id": order.customer_id,
            "refund_transfer_id": order.refund_transfer_id,
            "total_minor": order.total_minor,
            "currency": order.currency,
            "lines": _lines(order),
        }
    raise ValueError(f"order {order.id} is not final ({order.state})")
