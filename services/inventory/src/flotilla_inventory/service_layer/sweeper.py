"""The sweeper: every instance runs one. It expires HELD reservations past their deadline
and gives their stock back. Instances sweep the same table: each expiry is a
compare-and-set on the reservation's state, so of two sweepers one wins each reservation
and the stock comes back once."""

from __future__ import annotations

import asyncio

from flotilla_inventory.service_layer.reservations import ReservationDesk
from flotilla_kit.logs import get_logger
from flotilla_kit.recovery import run_paced

__all__ = ["Sweeper"]

_log = get_logger("flotilla.inventory.sweeper")


class Sweeper:
    def __init__(self, desk: ReservationDesk, *, batch: int) -> None:
        self._desk = desk
        self._batch = batch
        self._lock = asyncio.Lock()  # the loop and a test's tick never overlap

    async def tick(self) -> int:
        """One sweep; how many reservations it expired. A full batch sweeps again at once:
        a backlog clears without waiting an interval per batch."""
        async with self._lock:
            total = 0
            while True:
                expired = await self._desk.expire_overdue(limit=self._batch)
                total += expired
                if expired < self._batch:
                    return total

    async def run(self, interval_s: float) -> None:
        """Sweep every `interval_s` while sweeps expire something, less often while they
        do not (`flotilla_kit.recovery.run_paced`), until cancelled; a failed sweep is
        logged."""

        async def found_work() -> bool:
            return await self.tick() > 0

        await run_paced(
            found_work, every_s=interval_s, log=_log, failed="sweep failed", at_once=False
        )
