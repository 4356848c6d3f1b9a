"""What the orders service tells the world, as the `data` of its events (the shop's
events contract): built from an order in its final state, written in the same
transaction as that state."""

from __future__ import annotations

from typing import Any

from flotilla_orders.domain.order import Order, OrderState

__all__ = ["CANCELLED", "CONFIRMED", "SERVICE", "final_event"]

SERVICE = "orders"
CONFIRMED = "order_confirmed"
CANCELLED = "order_cancelled"


def final_event(order: Order) -> tuple[str, dict[str, Any]]:
    """(event name, data) of an order that has just become CONFIRMED or CANCELLED."""
    if order.state is OrderState.CONFIRMED:
        return CONFIRMED, {
            "order_id": str(order.id),
            "customer_id": order.customer_id,
            "lines": [
                {
                    "product_id": line.product_id,
                    "quantity": line.quantity,
                    "unit_price_minor": line.unit_price_minor,
                }
                for line in order.lines
            ],
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
    raise ValueError(f"order {order.id} is not final ({order.state})")
