"""Recovery: finishes what a dead (or slow) driver left unfinished.

Every instance runs it on a timer (and once at start). Each tick claims the unfinished
orders whose lease has expired and whose next attempt is due, with a compare-and-set on
the lease (so of several instances exactly one takes each), advances each one as far as
the dependencies allow, and gives back those that are still stuck, due again after a
backoff. Tests call `tick()` after moving their clock; `run()` is the lifespan's loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from flotilla_kit.logs import get_logger
from flotilla_kit.pacing import Pace
from flotilla_orders.domain import Order
from flotilla_orders.service_layer.ports import Clock, SagaMetrics, UnitOfWorkFactory
from flotilla_orders.service_layer.saga import Saga

__all__ = ["Recovery", "RecoveryReport"]

_log = get_logger("flotilla.orders.recovery")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    claimed: int
    finished: int
    unfinished: int  # orders not final after the tick, across all instances


class Recovery:
    def __init__(
        self,
        saga: Saga,
        *,
        uow: UnitOfWorkFactory,
        clock: Clock,
        metrics: SagaMetrics,
        interval_s: float,
        batch: int = 100,
    ) -> None:
        self._saga = saga
        self._uow = uow
        self._clock = clock
        self._metrics = metrics
        self._interval_s = interval_s
        self._batch = batch

    @property
    def _owner(self) -> str:
        return self._saga.config.instance_id

    async def release_own_leases(self) -> int:
        """At start, before serving: leases held under our instance id belong to a previous
        life of this instance, which is gone. Their orders become due at once."""
        async with self._uow() as uow:
            released = await uow.orders.release_leases_of(self._owner)
            await uow.commit()
        if released:
            _log.info("released the leases of a previous life", orders=released)
        return released

    async def tick(self) -> RecoveryReport:
        now = self._clock.now()
        async with self._uow(write=False) as uow:
            due = await uow.orders.due(now=now, limit=self._batch)
        claimed: list[Order] = []
        until = now + dt.timedelta(seconds=self._saga.config.lease_s)
        for order_id in due:
            # One short transaction per claim: no lock is held across orders.
            async with self._uow() as uow:
                order = await uow.orders.claim(order_id, now=now, owner=self._owner, until=until)
                if order is not None:
                    await uow.commit()
            if order is not None:
                claimed.append(order)
        finished = sum(await asyncio.gather(*(self._recover(o) for o in claimed)))
        async with self._uow(write=False) as uow:
            unfinished = await uow.orders.count_unfinished()
        self._metrics.unfinished(unfinished)
        return RecoveryReport(claimed=len(claimed), finished=finished, unfinished=unfinished)

    async def _recover(self, order: Order) -> bool:
        self._metrics.recovery_action(order.step.value)
        _log.info(
            "recovering an order", order_id=str(order.id), step=order.step.value,
            version=order.version, retries=order.retries,
        )  # fmt: skip
        try:
            after = await self._saga.step(order)
        except Exception:  # one bad order must not stop the others
            _log.exception("recovery step failed", order_id=str(order.id))
            after = order
        if after.is_final:
            self._metrics.recovery_action("finished")
            return True
        if await self._saga.release_for_retry(after):
            self._metrics.recovery_action("retry_scheduled")
        return False

    async def run(self) -> None:
        """Tick now, then every `interval_s` while orders are unfinished, less often while
        none is (`flotilla_kit.pacing`), until cancelled."""
        pace = Pace(self._interval_s)
        while True:
            try:
                report = await self.tick()
                found_work = report.claimed > 0 or report.unfinished > 0
            except Exception:  # a database hiccup: try again next time
                _log.exception("recovery tick failed")
                found_work = True
            await self._clock.sleep(pace.after(found_work=found_work))
