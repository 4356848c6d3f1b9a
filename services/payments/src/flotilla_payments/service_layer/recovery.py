"""Recovery: finishes what a dead (or slow) driver left unfinished.

Every instance runs it on a timer (and once at start). Each tick claims the unfinished
transfers whose lease has expired and whose next attempt is due, with a compare-and-set
on the lease (so of several instances exactly one takes each), advances each one as far
as the participants allow, and gives back those that are still stuck, due again after a
backoff. Tests call `tick()` after moving their clock; `run()` is the lifespan's loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from flotilla_kit.logs import get_logger
from flotilla_kit.pacing import Pace
from flotilla_payments.domain import Transfer, TransferPath, TransferState
from flotilla_payments.service_layer.coordinator import Coordinator
from flotilla_payments.service_layer.ports import Clock, TransferMetrics, UnitOfWorkFactory

__all__ = ["Recovery", "RecoveryReport", "recovery_kind"]

_log = get_logger("flotilla.payments.recovery")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    claimed: int
    finished: int
    unfinished: int  # in doubt after the tick, across all instances


def recovery_kind(transfer: Transfer, now: dt.datetime, prepare_timeout_s: float) -> str:
    """What recovery is about to do with a claimed transfer (a metric label)."""
    match transfer.state:
        case TransferState.COMMITTING:
            return "commit"
        case TransferState.ABORTING:
            return "abort"
    if transfer.path is TransferPath.LOCAL:
        return "resend_transfer"
    if transfer.prepare_expired(now, prepare_timeout_s):
        return "presumed_abort"
    return "prepare"


class Recovery:
    def __init__(
        self,
        coordinator: Coordinator,
        *,
        uow: UnitOfWorkFactory,
        clock: Clock,
        metrics: TransferMetrics,
        interval_s: float,
        batch: int = 100,
    ) -> None:
        self._coordinator = coordinator
        self._uow = uow
        self._clock = clock
        self._metrics = metrics
        self._interval_s = interval_s
        self._batch = batch

    @property
    def _owner(self) -> str:
        return self._coordinator.config.instance_id

    async def release_own_leases(self) -> int:
        """At start, before serving: leases held under our instance id belong to a previous
        life of this instance, which is gone. Their transfers become due at once."""
        async with self._uow() as uow:
            released = await uow.transfers.release_leases_of(self._owner)
            await uow.commit()
        if released:
            _log.info("released the leases of a previous life", transfers=released)
        return released

    async def tick(self) -> RecoveryReport:
        now = self._clock.now()
        async with self._uow(write=False) as uow:
            due = await uow.transfers.due(now=now, limit=self._batch)
        claimed: list[Transfer] = []
        until = now + dt.timedelta(seconds=self._coordinator.config.lease_s)
        for transfer_id in due:
            # One short transaction per claim: no lock is held across transfers. The claim
            # goes on the audit record with it: who resumed what, and from where.
            async with self._uow() as uow:
                transfer = await uow.transfers.claim(
                    transfer_id, now=now, owner=self._owner, until=until
                )
                if transfer is not None:
                    await uow.audit.record(
                        actor=f"system:payments-{self._owner}",
                        action="transfer.recovered",
                        target=str(transfer.id),
                        details={
                            "kind": recovery_kind(
                                transfer, now, self._coordinator.config.prepare_timeout_s
                            ),
                            "state": transfer.state.value,
                            "attempts": transfer.attempts,
                        },
                    )
                    await uow.commit()
            if transfer is not None:
                claimed.append(transfer)
        finished = sum(await asyncio.gather(*(self._recover(t, now) for t in claimed)))
        async with self._uow(write=False) as uow:
            unfinished = await uow.transfers.count_unfinished()
            oldest = await uow.transfers.oldest_unfinished()
        self._metrics.in_doubt(unfinished)
        age_s = 0.0 if oldest is None else (self._clock.now() - oldest).total_seconds()
        self._metrics.oldest_in_doubt(max(age_s, 0.0))
        return RecoveryReport(claimed=len(claimed), finished=finished, unfinished=unfinished)

    async def _recover(self, transfer: Transfer, now: dt.datetime) -> bool:
        config = self._coordinator.config
        kind = recovery_kind(transfer, now, config.prepare_timeout_s)
        self._metrics.recovery_action(kind)
        _log.info(
            "recovering a transfer", transfer_id=str(transfer.id), state=transfer.state.value,
            action=kind, attempts=transfer.attempts,
        )  # fmt: skip
        try:
            after = await self._coordinator.step(transfer)
        except Exception:  # one bad transfer must not stop the others
            _log.exception("recovery step failed", transfer_id=str(transfer.id))
            after = transfer
        if after.is_final:
            self._metrics.recovery_action("finished")
            return True
        if await self._coordinator.release_for_retry(after):
            self._metrics.recovery_action("retry_scheduled")
        return False

    async def run(self) -> None:
        """Tick now, then every `interval_s` while transfers are unfinished, less often
        while none is (`flotilla_kit.pacing`), until cancelled."""
        pace = Pace(self._interval_s)
        while True:
            try:
                report = await self.tick()
                found_work = report.claimed > 0 or report.unfinished > 0
            except Exception:  # a database hiccup: try again next time
                _log.exception("recovery tick failed")
                found_work = True
            await self._clock.sleep(pace.after(found_work=found_work))
