"""The order history, built only from events: the handlers that store what each event
says, and the read.

Handlers run inside the consumer's transaction (with its inbox row, so each event is
applied once); they only store facts, never read the orders table, so they commute: any
order of arrival gives the same history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flotilla_kit.tokens import Principal
from flotilla_orders.domain import HistoryEntry, outcome_of, refund_of, transfer_of
from flotilla_orders.service_layer.errors import InvalidCursor, NotAllowed
from flotilla_orders.service_layer.ports import HistoryRepository, OrdersUnitOfWork
from flotilla_orders.service_layer.use_cases import READ, READ_ANY

__all__ = ["HistoryPage", "order_history", "record_order_event", "record_transfer_committed"]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[HistoryEntry]
    next_after: str | None  # an order id; None on the last page


async def record_order_event(
    history: HistoryRepository,
    *,
    event_id: str,
    event_type: str,
    data: Mapping[str, Any],
    at: dt.datetime,
) -> bool:
    """Store how an order ended, or that it was refunded since; False for an orders event
    that is about neither (an event type this version does not know is acknowledged, not
    dead-lettered: the history only stores what it shows)."""
    outcome = outcome_of(event_type, data, at)
    if outcome is not None:
        await history.add_outcome(outcome, event_id=event_id)
        return True
    refund = refund_of(event_type, data, at)
    if refund is not None:
        await history.add_refund(refund, event_id=event_id)
        return True
    return False


async def record_transfer_committed(
    history: HistoryRepository, *, event_id: str, data: Mapping[str, Any], at: dt.datetime
) -> None:
    """Store that a transfer committed (any transfer: which order it paid is joined later)."""
    await history.add_transfer(transfer_of(data, at), event_id=event_id)


async def order_history(
    uow: OrdersUnitOfWork,
    *,
    principal: Principal,
    limit: int,
    after: str | None = None,
    customer_id: str | None = None,
) -> HistoryPage:
    """A customer's finished orders, newest first: the caller's own, or (staff) anyone's."""
    if not principal.can(READ) and not principal.can(READ_ANY):
        raise NotAllowed(READ)
    customer = customer_id if customer_id is not None else principal.subject
    if customer != principal.subject and not principal.can(READ_ANY):
        raise NotAllowed(READ_ANY)
    cursor: HistoryEntry | None = None
    if after is not None:
        cursor = await uow.history.get(after)
        if cursor is None or cursor.outcome.customer_id != customer:
            raise InvalidCursor()
    found = await uow.history.page_for_customer(customer, limit=limit + 1, after=cursor)
    items = found[:limit]
    more = len(found) > limit
    return HistoryPage(items=items, next_after=items[-1].outcome.order_id if more else None)
