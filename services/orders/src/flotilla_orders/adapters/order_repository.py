"""Orders over the kit's transactions; works on SQLite and PostgreSQL alike.

Every write of the saga is a compare-and-set: an UPDATE whose WHERE names the version the
writer last saw and the lease it holds, and whose row count says whether it won.

Each statement is declared once, below. One order is read in two statements, its row
then its lines: joined, the order's columns would be repeated (and their timestamps
parsed again) on every line, which costs more CPU than the second statement from two
lines on (measured on SQLite). A page of orders needs the join all the same (the kit
runs no `IN (list)`), in one statement, so its orders and lines share a snapshot.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.sql import Select

from flotilla_kit.db import Query, Row, Transaction
from flotilla_kit.leased_rows import LeaseStatements, SqlLeasedRows
from flotilla_orders.adapters.tables import order_lines, orders
from flotilla_orders.domain import CancelReason, Order, OrderLine, OrderState, SagaStep

__all__ = ["SqlOrderRepository"]

_o = orders.c
_l = order_lines.c
_DONE = SagaStep.DONE.value

# The columns every save writes (the rest are written once, by the INSERT).
_MUTABLE = (
    "state", "step", "reason", "total_minor", "payment_transfer_id", "refund_transfer_id",
    "pay_attempt", "refund_attempt", "version", "updated_at", "lease_owner", "lease_until",
    "retries", "next_attempt_at", "refund_refusal",
)  # fmt: skip


def _with_lines(page: Select[Any]) -> Select[Any]:
    """The orders `page` selects, each once per line (once, without a line, if it has
    none), newest first and its lines in order."""
    chosen = page.subquery("chosen")
    c = chosen.c
    return (
        select(chosen, _l.product_id, _l.quantity, _l.unit_price_minor)
        .select_from(chosen.outerjoin(order_lines, _l.order_id == c.id))
        .order_by(c.created_at.desc(), c.id.desc(), _l.line_no)
    )


def _page(*, customer: bool, state: bool, after_cursor: bool) -> Query:
    """A page of orders, newest first: of one customer or everyone's, in one state or any,
    from the start or after a cursor (the previous page's last order)."""
    page = select(orders)
    if customer:
        page = page.where(_o.customer_id == bindparam("customer_id"))
    if state:
        page = page.where(_o.state == bindparam("state"))
    if after_cursor:
        after_at = bindparam("after_created_at", type_=_o.created_at.type)
        page = page.where(
            or_(
                _o.created_at < after_at,
                and_(_o.created_at == after_at, _o.id < bindparam("after_id", type_=_o.id.type)),
            )
        )
    return Query(
        _with_lines(page.order_by(_o.created_at.desc(), _o.id.desc()).limit(bindparam("limit")))
    )


# (of one customer, in one state, after a cursor) -> its statement
_PAGES = {
    (customer, state, after): _page(customer=customer, state=state, after_cursor=after)
    for customer in (True, False)
    for state in (True, False)
    for after in (True, False)
    if customer or state  # everyone's orders in any state: no such page
}


_INSERT_ORDER = Query(orders.insert().values({c.name: bindparam(c.name) for c in _o}))
_INSERT_LINES = Query(order_lines.insert().values({c.name: bindparam(c.name) for c in _l}))
_ORDER = Query(select(orders).where(_o.id == bindparam("order_id")))
_LINES_OF_ORDER = Query(
    select(_l.product_id, _l.quantity, _l.unit_price_minor)
    .where(_l.order_id == bindparam("order_id"))
    .order_by(_l.line_no)
)
_SAVE = Query(
    update(orders)
    .where(
        _o.id == bindparam("order_id"),
        _o.version == bindparam("expected_version"),
        _o.lease_owner == bindparam("owner"),
    )
    .values({name: bindparam(name) for name in _MUTABLE})
)
# A finished order is leased to nobody: the refund's first write checks the version and
# that the order is still CONFIRMED and finished instead.
_START_REFUND = Query(
    update(orders)
    .where(
        _o.id == bindparam("order_id"),
        _o.version == bindparam("expected_version"),
        _o.state == OrderState.CONFIRMED.value,
        _o.step == _DONE,
    )
    .values({name: bindparam(name) for name in _MUTABLE})
)
_SET_PRICES = Query(
    update(order_lines)
    .where(_l.order_id == bindparam("o_id"), _l.line_no == bindparam("o_line"))
    .values(unit_price_minor=bindparam("o_price"))
)
_LEASES = LeaseStatements(
    orders, unfinished=_o.step != _DONE, attempts=_o.retries, expected=_o.version
)


def _line(row: Row) -> OrderLine:
    price = int(row.unit_price_minor) if row.unit_price_minor is not None else None
    return OrderLine(row.product_id, int(row.quantity), price)


def _orders(rows: Sequence[Row]) -> list[Order]:
    """Orders from rows of `_with_lines`: consecutive rows of one order hold its lines."""
    found: list[Order] = []
    lines: list[OrderLine] = []
    for index, row in enumerate(rows):
        if row.product_id is not None:
            lines.append(_line(row))
        if index + 1 == len(rows) or rows[index + 1].id != row.id:
            found.append(_order(row, lines))
            lines = []
    return found


def _order(m: Row, lines: Sequence[OrderLine]) -> Order:
    return Order(
        id=m.id,
        customer_id=m.customer_id,
        lines=tuple(lines),
        currency=m.currency,
        payment_account=m.payment_account,
        shop_account=m.shop_account,
        shop_owner=m.shop_owner,
        step=SagaStep(m.step),
        created_at=m.created_at,
        updated_at=m.updated_at,
        reserve_deadline=m.reserve_deadline,
        next_attempt_at=m.next_attempt_at,
        state=OrderState(m.state),
        reason=CancelReason(m.reason) if m.reason is not None else None,
        total_minor=int(m.total_minor) if m.total_minor is not None else None,
        payment_transfer_id=m.payment_transfer_id,
        refund_transfer_id=m.refund_transfer_id,
        pay_attempt=int(m.pay_attempt),
        refund_attempt=int(m.refund_attempt),
        version=int(m.version),
        lease_owner=m.lease_owner,
        lease_until=m.lease_until,
        retries=int(m.retries),
        refund_refusal=m.refund_refusal,
    )


def _mutable(order: Order) -> dict[str, Any]:
    return {
        "state": order.state.value,
        "step": order.step.value,
        "reason": order.reason.value if order.reason else None,
        "total_minor": order.total_minor,
        "payment_transfer_id": order.payment_transfer_id,
        "refund_transfer_id": order.refund_transfer_id,
        "pay_attempt": order.pay_attempt,
        "refund_attempt": order.refund_attempt,
        "version": order.version,
        "updated_at": order.updated_at,
        "lease_owner": order.lease_owner,
        "lease_until": order.lease_until,
        "retries": order.retries,
        "next_attempt_at": order.next_attempt_at,
        "refund_refusal": order.refund_refusal,
    }


class SqlOrderRepository(SqlLeasedRows[uuid.UUID, Order]):
    lease_statements = _LEASES

    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def add(self, order: Order) -> None:
        await self.transaction.execute(
            _INSERT_ORDER,
            id=order.id,
            customer_id=order.customer_id,
            payment_account=order.payment_account,
            shop_account=order.shop_account,
            shop_owner=order.shop_owner,
            currency=order.currency,
            created_at=order.created_at,
            reserve_deadline=order.reserve_deadline,
            **_mutable(order),
        )
        await self.transaction.execute_many(
            _INSERT_LINES,
            [
                {
                    "order_id": order.id,
                    "line_no": number,
                    "product_id": line.product_id,
                    "quantity": line.quantity,
                    "unit_price_minor": line.unit_price_minor,
                }
                for number, line in enumerate(order.lines)
            ],
        )

    async def get(self, order_id: uuid.UUID) -> Order | None:
        row = await self.transaction.first(_ORDER, order_id=order_id)
        if row is None:
            return None
        lines = await self.transaction.all(_LINES_OF_ORDER, order_id=order_id)
        return _order(row, [_line(line) for line in lines])

    async def page_for_customer(
        self, customer_id: str, *, limit: int, after: Order | None, state: OrderState | None = None
    ) -> list[Order]:
        return await self._page(customer_id, state, limit=limit, after=after)

    async def page_in_state(
        self, state: OrderState, *, limit: int, after: Order | None
    ) -> list[Order]:
        return await self._page(None, state, limit=limit, after=after)

    async def _page(
        self, customer_id: str | None, state: OrderState | None, *, limit: int, after: Order | None
    ) -> list[Order]:
        params: dict[str, Any] = {"limit": limit}
        if customer_id is not None:
            params["customer_id"] = customer_id
        if state is not None:
            params["state"] = state.value
        if after is not None:
            params.update(after_created_at=after.created_at, after_id=after.id)
        query = _PAGES[customer_id is not None, state is not None, after is not None]
        return _orders(await self.transaction.all(query, **params))

    async def save(
        self, order: Order, *, expected_version: int, owner: str, prices: bool = False
    ) -> bool:
        changed = await self.transaction.execute(
            _SAVE,
            order_id=order.id,
            expected_version=expected_version,
            owner=owner,
            **_mutable(order),
        )
        if changed != 1:
            return False
        if prices:
            await self.transaction.execute_many(
                _SET_PRICES,
                [
                    {"o_id": order.id, "o_line": number, "o_price": line.unit_price_minor}
                    for number, line in enumerate(order.lines)
                ],
            )
        return True

    async def start_refund(self, order: Order, *, expected_version: int) -> bool:
        changed = await self.transaction.execute(
            _START_REFUND, order_id=order.id, expected_version=expected_version, **_mutable(order)
        )
        return changed == 1

    async def extend_lease(
        self, order: Order, *, owner: str, until: dt.datetime, next_attempt_at: dt.datetime
    ) -> Order | None:
        kept = replace(
            order, retries=order.retries + 1, next_attempt_at=next_attempt_at, lease_until=until
        )
        extended = await self._extend(
            order.id, expected=order.version, owner=owner, until=until,
            attempts=kept.retries, next_attempt_at=next_attempt_at,
        )  # fmt: skip
        return kept if extended else None

    async def release_lease(
        self, order: Order, *, owner: str, next_attempt_at: dt.datetime
    ) -> bool:
        return await self._release(
            order.id, owner=owner, attempts=order.retries + 1, next_attempt_at=next_attempt_at
        )
