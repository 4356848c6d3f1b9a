"""Orders over SQLAlchemy Core; works on SQLite and PostgreSQL alike.

Every write of the saga is a compare-and-set: an UPDATE whose WHERE names the version the
writer last saw and the lease it holds, and whose row count says whether it won.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import CursorResult, Result, and_, bindparam, func, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_orders.adapters.tables import order_lines, orders
from flotilla_orders.domain import CancelReason, Order, OrderLine, OrderState, SagaStep

__all__ = ["SqlOrderRepository"]

_o = orders.c
_l = order_lines.c
_DONE = SagaStep.DONE.value


def _won(result: Result[Any]) -> bool:
    # DML statements always produce a cursor result; the type is only widened by the API.
    assert isinstance(result, CursorResult)
    return int(result.rowcount) == 1


def _order(m: RowMapping, lines: Sequence[OrderLine]) -> Order:
    return Order(
        id=m["id"],
        customer_id=m["customer_id"],
        lines=tuple(lines),
        currency=m["currency"],
        payment_account=m["payment_account"],
        shop_account=m["shop_account"],
        shop_owner=m["shop_owner"],
        step=SagaStep(m["step"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        reserve_deadline=m["reserve_deadline"],
        next_attempt_at=m["next_attempt_at"],
        state=OrderState(m["state"]),
        reason=CancelReason(m["reason"]) if m["reason"] is not None else None,
        total_minor=int(m["total_minor"]) if m["total_minor"] is not None else None,
        payment_transfer_id=m["payment_transfer_id"],
        refund_transfer_id=m["refund_transfer_id"],
        pay_attempt=int(m["pay_attempt"]),
        refund_attempt=int(m["refund_attempt"]),
        version=int(m["version"]),
        lease_owner=m["lease_owner"],
        lease_until=m["lease_until"],
        retries=int(m["retries"]),
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
    }


def _lease_free(now: dt.datetime) -> Any:
    return or_(_o.lease_until.is_(None), _o.lease_until <= now)


class SqlOrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, order: Order) -> None:
        await self.session.execute(
            orders.insert().values(
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
        )
        await self.session.execute(
            order_lines.insert(),
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

    async def _lines(self, order_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[OrderLine]]:
        found: dict[uuid.UUID, list[OrderLine]] = defaultdict(list)
        if not order_ids:
            return found
        rows = await self.session.execute(
            select(order_lines).where(_l.order_id.in_(order_ids)).order_by(_l.order_id, _l.line_no)
        )
        for row in rows:
            price = int(row.unit_price_minor) if row.unit_price_minor is not None else None
            found[row.order_id].append(OrderLine(row.product_id, int(row.quantity), price))
        return found

    async def get(self, order_id: uuid.UUID) -> Order | None:
        row = (await self.session.execute(select(orders).where(_o.id == order_id))).first()
        if row is None:
            return None
        lines = await self._lines([order_id])
        return _order(row._mapping, lines[order_id])

    async def page_for_customer(
        self, customer_id: str, *, limit: int, after: Order | None
    ) -> list[Order]:
        query = select(orders).where(_o.customer_id == customer_id)
        if after is not None:
            query = query.where(
                or_(
                    _o.created_at < after.created_at,
                    and_(_o.created_at == after.created_at, _o.id < after.id),
                )
            )
        rows = (
            await self.session.execute(
                query.order_by(_o.created_at.desc(), _o.id.desc()).limit(limit)
            )
        ).all()
        lines = await self._lines([row.id for row in rows])
        return [_order(row._mapping, lines[row.id]) for row in rows]

    async def save(
        self, order: Order, *, expected_version: int, owner: str, prices: bool = False
    ) -> bool:
        result = await self.session.execute(
            update(orders)
            .where(_o.id == order.id, _o.version == expected_version, _o.lease_owner == owner)
            .values(**_mutable(order))
        )
        if not _won(result):
            return False
        if prices:
            await self.session.execute(
                update(order_lines)
                .where(_l.order_id == bindparam("o_id"), _l.line_no == bindparam("o_line"))
                .values(unit_price_minor=bindparam("o_price")),
                [
                    {"o_id": order.id, "o_line": number, "o_price": line.unit_price_minor}
                    for number, line in enumerate(order.lines)
                ],
            )
        return True

    async def extend_lease(
        self,
        order_id: uuid.UUID,
        *,
        owner: str,
        version: int,
        until: dt.datetime,
        retries: int,
        next_attempt_at: dt.datetime,
    ) -> bool:
        result = await self.session.execute(
            update(orders)
            .where(_o.id == order_id, _o.lease_owner == owner, _o.version == version)
            .values(lease_until=until, retries=retries, next_attempt_at=next_attempt_at)
        )
        return _won(result)

    async def release_lease(
        self, order_id: uuid.UUID, *, owner: str, retries: int, next_attempt_at: dt.datetime
    ) -> bool:
        result = await self.session.execute(
            update(orders)
            .where(_o.id == order_id, _o.lease_owner == owner, _o.step != _DONE)
            .values(
                lease_owner=None, lease_until=None, retries=retries, next_attempt_at=next_attempt_at
            )
        )
        return _won(result)

    async def release_leases_of(self, owner: str) -> int:
        result = await self.session.execute(
            update(orders)
            .where(_o.lease_owner == owner, _o.step != _DONE)
            .values(lease_owner=None, lease_until=None)
        )
        assert isinstance(result, CursorResult)
        return int(result.rowcount)

    async def due(self, *, now: dt.datetime, limit: int) -> list[uuid.UUID]:
        rows = await self.session.execute(
            select(_o.id)
            .where(_o.step != _DONE, _o.next_attempt_at <= now, _lease_free(now))
            .order_by(_o.next_attempt_at, _o.id)
            .limit(limit)
        )
        return [row.id for row in rows]

    async def claim(
        self, order_id: uuid.UUID, *, now: dt.datetime, owner: str, until: dt.datetime
    ) -> Order | None:
        result = await self.session.execute(
            update(orders)
            .where(_o.id == order_id, _o.step != _DONE, _lease_free(now))
            .values(lease_owner=owner, lease_until=until)
        )
        if not _won(result):
            return None
        return await self.get(order_id)

    async def count_unfinished(self) -> int:
        count = (
            await self.session.execute(
                select(func.count()).select_from(orders).where(_o.step != _DONE)
            )
        ).scalar_one()
        return int(count)
