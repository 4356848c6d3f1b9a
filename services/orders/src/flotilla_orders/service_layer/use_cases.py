"""Reading orders: one function per use case. Ownership is decided here, next to the
data; the HTTP layer only checks that a caller is authenticated."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flotilla_kit.tokens import Principal
from flotilla_orders.domain import Order, OrderState
from flotilla_orders.service_layer.errors import InvalidCursor, NotAllowed, OrderNotFound
from flotilla_orders.service_layer.ports import OrdersUnitOfWork

__all__ = ["READ", "READ_ANY", "OrderPage", "get_order", "list_orders"]

READ = "orders:read"
READ_ANY = "orders:read:any"


@dataclass(frozen=True, slots=True)
class OrderPage:
    items: list[Order]
    next_after: str | None  # pass as `after` for the next page; None on the last one


def _parse_id(order_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(order_id)
    except ValueError:
        return None


async def get_order(uow: OrdersUnitOfWork, *, principal: Principal, order_id: str) -> Order:
    may_read_any = principal.can(READ_ANY)
    if not may_read_any and not principal.can(READ):
        raise NotAllowed(READ)
    key = _parse_id(order_id)
    order = await uow.orders.get(key) if key is not None else None
    if order is None or (order.customer_id != principal.subject and not may_read_any):
        # Someone else's order looks exactly like a missing one: ids cannot be probed.
        raise OrderNotFound(order_id)
    return order


async def list_orders(
    uow: OrdersUnitOfWork,
    *,
    principal: Principal,
    limit: int,
    after: str | None = None,
    customer_id: str | None = None,
    status: OrderState | None = None,
) -> OrderPage:
    """Orders, newest first, only those in `status` if given: the caller's own, or (staff)
    a customer's; staff asking for a `status` without naming a customer get everyone's
    orders in it (the operator console's pending orders)."""
    may_read_any = principal.can(READ_ANY)
    if not principal.can(READ) and not may_read_any:
        raise NotAllowed(READ)
    if status is not None and customer_id is None and may_read_any:
        cursor = await _cursor(uow, after, owner=None)
        found = await uow.orders.page_in_state(status, limit=limit + 1, after=cursor)
    else:
        customer = customer_id if customer_id is not None else principal.subject
        if customer != principal.subject and not may_read_any:
            raise NotAllowed(READ_ANY)
        cursor = await _cursor(uow, after, owner=customer)
        found = await uow.orders.page_for_customer(
            customer, limit=limit + 1, after=cursor, state=status
        )
    items = found[:limit]
    more = len(found) > limit
    return OrderPage(items=items, next_after=str(items[-1].id) if more else None)


async def _cursor(uow: OrdersUnitOfWork, after: str | None, *, owner: str | None) -> Order | None:
    """The order a page goes on after: one of `owner`'s (anyone's for None)."""
    if after is None:
        return None
    key = _parse_id(after)
    cursor = await uow.orders.get(key) if key is not None else None
    if cursor is None or (owner is not None and cursor.customer_id != owner):
        raise InvalidCursor()
    return cursor
