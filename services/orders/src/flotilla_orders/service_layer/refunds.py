"""Refunding a CONFIRMED order (support's decision): the order's total goes back from the
shop's account to the account that paid, through payments, as durably as the saga.

CONFIRMED -> REFUNDING is written (a compare-and-set on the version, leased to this
instance) before payments is asked; the saga's driver then makes the transfer (the same
call and on-behalf rules as the compensation's refund, under the key
`order:<id>:refund:<attempt>`) and writes REFUNDED with the `order_refunded` event in one
transaction. A process that dies anywhere in between leaves a REFUNDING order that
recovery finishes. Stock is not returned: the goods were sold.

One refund per order: asking again while REFUNDING or once REFUNDED answers the order as
it stands, and starts nothing. A definite refusal by payments puts the order back to
CONFIRMED with the refusal noted; asking again then starts a new attempt (a new key).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flotilla_kit.clock import Clock
from flotilla_kit.tokens import Principal
from flotilla_orders.domain import Order, OrderState
from flotilla_orders.service_layer.errors import (
    NotAllowed,
    OrderNotFound,
    OrderNotRefundable,
    RefundRefused,
)
from flotilla_orders.service_layer.faults import FaultPoint
from flotilla_orders.service_layer.ports import Faults, UnitOfWorkFactory
from flotilla_orders.service_layer.saga import Saga

__all__ = ["REFUND", "Refund", "Refunds"]

REFUND = "orders:refund"

# Two writers racing for one CONFIRMED order: one wins, the other replays what it did.
_RACES = 2


@dataclass(frozen=True, slots=True)
class Refund:
    order: Order  # as it stands when the caller is answered
    replayed: bool  # an earlier request started this refund


class Refunds:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        saga: Saga,
        clock: Clock,
        faults: Faults,
        answer_within_s: float = 0.0,
    ) -> None:
        self._uow = uow
        self._saga = saga
        self._clock = clock
        self._faults = faults
        self._answer_within_s = answer_within_s

    async def refund(self, *, principal: Principal, order_id: str) -> Refund:
        if not principal.can(REFUND):
            raise NotAllowed(REFUND)
        key = _parse_id(order_id)
        for _ in range(_RACES):
            order = await self._get(key, order_id)
            if order.state in (OrderState.REFUNDING, OrderState.REFUNDED):
                return Refund(order, replayed=True)
            if not order.refundable:
                raise OrderNotRefundable(order_id, order.state.value)
            started = await self._start(order)
            if started is not None:
                break
        else:
            return Refund(await self._get(key, order_id), replayed=True)
        self._faults.hit(FaultPoint.AFTER_REFUNDING_RECORDED)
        task = self._saga.launch(started)
        answered = await self._saga.answer(started, task, self._answer_within_s)
        if answered.state is OrderState.CONFIRMED and answered.refund_refusal is not None:
            raise RefundRefused(order_id, answered.refund_refusal)
        return Refund(answered, replayed=False)

    async def _get(self, key: uuid.UUID | None, order_id: str) -> Order:
        async with self._uow(write=False) as uow:
            order = await uow.orders.get(key) if key is not None else None
        if order is None:
            raise OrderNotFound(order_id)
        return order

    async def _start(self, order: Order) -> Order | None:
        """CONFIRMED -> REFUNDING, durable; None if another request (or instance) won."""
        now = self._clock()
        refunding = order.start_refund(
            at=now,
            lease_owner=self._saga.config.instance_id,
            lease_until=self._saga.leases.until(now),
        )
        async with self._uow() as uow:
            if not await uow.orders.start_refund(refunding, expected_version=order.version):
                return None
            await uow.commit()
        return refunding


def _parse_id(order_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(order_id)
    except ValueError:
        return None
