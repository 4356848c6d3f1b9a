"""The order history's facts over SQLAlchemy Core, on SQLite and PostgreSQL alike.

Writes insert a fact unless one with the same key is stored already (ON CONFLICT DO
NOTHING), so the same fact arriving twice, under two event ids, changes nothing. Reads
join an order's outcome with the transfers known to have committed.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Table, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from flotilla_orders.adapters.tables import history_orders, history_payments
from flotilla_orders.domain import (
    CommittedTransfer,
    HistoryEntry,
    OrderLine,
    OrderOutcome,
    OrderState,
    payment_state,
)

__all__ = ["SqlHistory"]

_h = history_orders.c
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


def _entry(m: RowMapping) -> HistoryEntry:
    lines = None
    if m["lines"] is not None:
        lines = tuple(
            OrderLine(item["product_id"], item["quantity"], item["unit_price_minor"])
            for item in json.loads(m["lines"])
        )
    outcome = OrderOutcome(
        order_id=m["order_id"],
        customer_id=m["customer_id"],
        state=OrderState(m["state"]),
        finished_at=m["finished_at"],
        reason=m["reason"],
        total_minor=int(m["total_minor"]) if m["total_minor"] is not None else None,
        currency=m["currency"],
        lines=lines,
        payment_transfer_id=m["payment_transfer_id"],
        refund_transfer_id=m["refund_transfer_id"],
    )
    committed = frozenset(t for t in (m["paid_id"], m["refunded_id"]) if t is not None)
    return HistoryEntry(outcome, payment_state(outcome, committed))


def _entries() -> Select[Any]:
    return select(
        history_orders,
        _paid.c.transfer_id.label("paid_id"),
        _refunded.c.transfer_id.label("refunded_id"),
    ).select_from(
        history_orders.outerjoin(_paid, _paid.c.transfer_id == _h.payment_transfer_id).outerjoin(
            _refunded, _refunded.c.transfer_id == _h.refund_transfer_id
        )
    )


class SqlHistory:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _insert_unless_there(self, table: Table, key: str, values: dict[str, Any]) -> None:
        dialect = self.session.get_bind().dialect.name
        module = postgresql if dialect == "postgresql" else sqlite
        statement = (
            module.insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])
        )
        await self.session.execute(statement)

    async def add_outcome(self, outcome: OrderOutcome, *, event_id: str) -> None:
        await self._insert_unless_there(
            history_orders,
            "order_id",
            {
                "order_id": outcome.order_id,
                "customer_id": outcome.customer_id,
                "state": outcome.state.value,
                "reason": outcome.reason,
                "total_minor": outcome.total_minor,
                "currency": outcome.currency,
                "lines": _lines_json(outcome),
                "payment_transfer_id": outcome.payment_transfer_id,
                "refund_transfer_id": outcome.refund_transfer_id,
                "finished_at": outcome.finished_at,
                "event_id": event_id,
            },
        )

    async def add_transfer(self, transfer: CommittedTransfer, *, event_id: str) -> None:
        await self._insert_unless_there(
            history_payments,
            "transfer_id",
            {
                "transfer_id": transfer.transfer_id,
                "amount_minor": transfer.amount_minor,
                "currency": transfer.currency,
                "committed_at": transfer.committed_at,
                "event_id": event_id,
            },
        )

    async def get(self, order_id: str) -> HistoryEntry | None:
        row = (await self.session.execute(_entries().where(_h.order_id == order_id))).first()
        return _entry(row._mapping) if row else None

    async def page_for_customer(
        self, customer_id: str, *, limit: int, after: HistoryEntry | None
    ) -> list[HistoryEntry]:
        query = _entries().where(_h.customer_id == customer_id)
        if after is not None:
            last = after.outcome
            query = query.where(
                or_(
                    _h.finished_at < last.finished_at,
                    and_(_h.finished_at == last.finished_at, _h.order_id < last.order_id),
                )
            )
        rows = await self.session.execute(
            query.order_by(_h.finished_at.desc(), _h.order_id.desc()).limit(limit)
        )
        return [_entry(row._mapping) for row in rows]
