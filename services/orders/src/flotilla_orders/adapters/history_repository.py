"""The order history's facts over the kit's transactions, on SQLite and PostgreSQL alike.

Writes insert a fact unless one with the same key is stored already (ON CONFLICT DO
NOTHING), so the same fact arriving twice, under two event ids, changes nothing. Reads
join an order's outcome with its refund, if any, and the transfers known to have
committed.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import Insert

from flotilla_kit.db import Query, Row, Transaction
from flotilla_orders.adapters.tables import history_orders, history_payments, history_refunds
from flotilla_orders.domain import (
    CommittedTransfer,
    HistoryEntry,
    OrderLine,
    OrderOutcome,
    OrderRefund,
    OrderState,
    payment_state,
    refunded,
)

__all__ = ["SqlHistory"]

_h = history_orders.c
_r = history_refunds.c
_paid = history_payments.alias("paid")
_refunded = history_payments.alias("refunded")


def _lines_json(outcome: OrderOutcome) -> str | None:
    if outcome.lines is None:
        return None
    return json.dumps(
        [
            {
                "product_id": line.product_id,
                "quantity": line.quantity,
                "unit_price_minor": line.unit_price_minor,
            }
            for line in outcome.lines
        ]
    )


def _entry(m: Row) -> HistoryEntry:
    lines = None
    if m.lines is not None:
        lines = tuple(
            OrderLine(item["product_id"], item["quantity"], item["unit_price_minor"])
            for item in json.loads(m.lines)
        )
    outcome = OrderOutcome(
        order_id=m.order_id,
        customer_id=m.customer_id,
        state=OrderState(m.state),
        finished_at=m.finished_at,
        reason=m.reason,
        total_minor=int(m.total_minor) if m.total_minor is not None else None,
        currency=m.currency,
        lines=lines,
        payment_transfer_id=m.payment_transfer_id,
        refund_transfer_id=m.refund_transfer_id,
    )
    if m.refunded_transfer_id is not None:
        outcome = refunded(outcome, OrderRefund(m.order_id, m.refunded_transfer_id, m.refunded_at))
    committed = frozenset(t for t in (m.paid_id, m.refunded_id) if t is not None)
    return HistoryEntry(outcome, payment_state(outcome, committed))


def _entries() -> Select[Any]:
    # A compensated order names its refund in `history_orders`; a refunded confirmed one
    # in `history_refunds`: either is the refund transfer whose commit is looked up.
    refund_transfer = func.coalesce(_r.refund_transfer_id, _h.refund_transfer_id)
    return select(
        history_orders,
        _r.refund_transfer_id.label("refunded_transfer_id"),
        _r.refunded_at,
        _paid.c.transfer_id.label("paid_id"),
        _refunded.c.transfer_id.label("refunded_id"),
    ).select_from(
        history_orders.outerjoin(history_refunds, _r.order_id == _h.order_id)
        .outerjoin(_paid, _paid.c.transfer_id == _h.payment_transfer_id)
        .outerjoin(_refunded, _refunded.c.transfer_id == refund_transfer)
    )


def _insert_unless_there(table: Table, key: str) -> Query:
    """INSERT ... ON CONFLICT (key) DO NOTHING, every column a parameter of its name."""

    def build(dialect_name: str) -> Insert:
        values: dict[str, Any] = {c.name: bindparam(c.name) for c in table.c}
        if dialect_name == "postgresql":
            return (
                postgresql.insert(table).values(values).on_conflict_do_nothing(index_elements=[key])
            )
        return sqlite.insert(table).values(values).on_conflict_do_nothing(index_elements=[key])

    return Query(build)


def _customers_page(*, after_cursor: bool) -> Query:
    page = _entries().where(_h.customer_id == bindparam("customer_id"))
    if after_cursor:
        after_at = bindparam("after_finished_at", type_=_h.finished_at.type)
        page = page.where(
            or_(
                _h.finished_at < after_at,
                and_(_h.finished_at == after_at, _h.order_id < bindparam("after_order_id")),
            )
        )
    return Query(page.order_by(_h.finished_at.desc(), _h.order_id.desc()).limit(bindparam("limit")))


_ADD_OUTCOME = _insert_unless_there(history_orders, "order_id")
_ADD_REFUND = _insert_unless_there(history_refunds, "order_id")
_ADD_TRANSFER = _insert_unless_there(history_payments, "transfer_id")
_ENTRY = Query(_entries().where(_h.order_id == bindparam("order_id")))
_FIRST_PAGE = _customers_page(after_cursor=False)
_NEXT_PAGE = _customers_page(after_cursor=True)


class SqlHistory:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def add_outcome(self, outcome: OrderOutcome, *, event_id: str) -> None:
        await self.transaction.execute(
            _ADD_OUTCOME,
            order_id=outcome.order_id,
            customer_id=outcome.customer_id,
            state=outcome.state.value,
            reason=outcome.reason,
            total_minor=outcome.total_minor,
            currency=outcome.currency,
            lines=_lines_json(outcome),
            payment_transfer_id=outcome.payment_transfer_id,
            refund_transfer_id=outcome.refund_transfer_id,
            finished_at=outcome.finished_at,
            event_id=event_id,
        )

    async def add_refund(self, refund: OrderRefund, *, event_id: str) -> None:
        await self.transaction.execute(
            _ADD_REFUND,
            order_id=refund.order_id,
            refund_transfer_id=refund.refund_transfer_id,
            refunded_at=refund.refunded_at,
            event_id=event_id,
        )

    async def add_transfer(self, transfer: CommittedTransfer, *, event_id: str) -> None:
        await self.transaction.execute(
            _ADD_TRANSFER,
            transfer_id=transfer.transfer_id,
            amount_minor=transfer.amount_minor,
            currency=transfer.currency,
            committed_at=transfer.committed_at,
            event_id=event_id,
        )

    async def get(self, order_id: str) -> HistoryEntry | None:
        row = await self.transaction.first(_ENTRY, order_id=order_id)
        return _entry(row) if row else None

    async def page_for_customer(
        self, customer_id: str, *, limit: int, after: HistoryEntry | None
    ) -> list[HistoryEntry]:
        if after is None:
            rows = await self.transaction.all(_FIRST_PAGE, customer_id=customer_id, limit=limit)
        else:
            last = after.outcome
            rows = await self.transaction.all(
                _NEXT_PAGE, customer_id=customer_id, limit=limit,
                after_finished_at=last.finished_at, after_order_id=last.order_id,
            )  # fmt: skip
        return [_entry(row) for row in rows]
