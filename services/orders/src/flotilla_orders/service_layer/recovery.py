"""Recovery: finishes what a dead (or slow) driver left unfinished.

Every instance runs it on a timer (and once at start): `flotilla_kit.recovery.RecoveryLoop`
claims the unfinished orders whose lease has expired and whose next attempt is due, and
gives back those that are still stuck, due again after a backoff. What is ours: resuming
an order is running the saga's next steps as far as the dependencies allow. Tests call
`tick()` after moving their clock; `run()` is the lifespan's loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from flotilla_kit.clock import Sleep
from flotilla_kit.logs import get_logger
from flotilla_kit.recovery import RecoveryLoop, RecoveryReport
from flotilla_orders.domain import Order
from flotilla_orders.service_layer.ports import OrdersUnitOfWork, SagaMetrics
from flotilla_orders.service_layer.saga import Saga

__all__ = ["Recovery", "RecoveryReport"]

_log = get_logger("flotilla.orders.recovery")


class Recovery(RecoveryLoop[OrdersUnitOfWork, uuid.UUID, Order]):
    def __init__(
        self,
        saga: Saga,
        *,
        metrics: SagaMetrics,
        interval_s: float,
        batch: int = 100,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(
            saga.leases, count=metrics.recovery_action, log=_log, noun="orders",
            interval_s=interval_s, batch=batch, sleep=sleep,
        )  # fmt: skip
        self._saga = saga
        self._metrics = metrics

    async def _resume(self, order: Order, now: dt.datetime) -> Order:
        self._metrics.recovery_action(order.step.value)
        _log.info(
            "recovering an order", order_id=str(order.id), step=order.step.value,
            version=order.version, retries=order.retries,
        )  # fmt: skip
        return await self._saga.step(order)

    async def _unfinished(self, uow: OrdersUnitOfWork) -> int:
        unfinished = await uow.orders.count_unfinished()
        self._metrics.unfinished(unfinished)
        return unfinished
