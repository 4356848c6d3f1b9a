"""Recovery: finishes what a dead (or slow) driver left unfinished.

Every instance runs it on a timer (and once at start): `flotilla_kit.recovery.RecoveryLoop`
claims the unfinished transfers whose lease has expired and whose next attempt is due,
and gives back those that are still stuck, due again after a backoff. What is ours:
resuming a transfer is running the coordinator's next steps as far as the participants
allow; each claim goes on the audit record with it (who resumed what, and from where); the
gauges say how many transfers are in doubt and since when. Tests call `tick()` after
moving their clock; `run()` is the lifespan's loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from flotilla_kit.clock import Sleep
from flotilla_kit.logs import get_logger
from flotilla_kit.recovery import RecoveryLoop, RecoveryReport
from flotilla_payments.domain import Transfer, TransferPath, TransferState
from flotilla_payments.service_layer.coordinator import Coordinator
from flotilla_payments.service_layer.ports import PaymentsUnitOfWork, TransferMetrics

__all__ = ["Recovery", "RecoveryReport", "recovery_kind"]

_log = get_logger("flotilla.payments.recovery")


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


class Recovery(RecoveryLoop[PaymentsUnitOfWork, uuid.UUID, Transfer]):
    def __init__(
        self,
        coordinator: Coordinator,
        *,
        metrics: TransferMetrics,
        interval_s: float,
        batch: int = 100,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(
            coordinator.leases, count=metrics.recovery_action, log=_log, noun="transfers",
            interval_s=interval_s, batch=batch, sleep=sleep,
        )  # fmt: skip
        self._coordinator = coordinator
        self._metrics = metrics

    def _kind(self, transfer: Transfer, now: dt.datetime) -> str:
        return recovery_kind(transfer, now, self._coordinator.config.prepare_timeout_s)

    async def _claimed(self, uow: PaymentsUnitOfWork, transfer: Transfer, now: dt.datetime) -> None:
        await uow.audit.record(
            actor=f"system:payments-{self._coordinator.config.instance_id}",
            action="transfer.recovered",
            target=str(transfer.id),
            details={
                "kind": self._kind(transfer, now),
                "state": transfer.state.value,
                "attempts": transfer.attempts,
            },
        )

    async def _resume(self, transfer: Transfer, now: dt.datetime) -> Transfer:
        kind = self._kind(transfer, now)
        self._metrics.recovery_action(kind)
        _log.info(
            "recovering a transfer", transfer_id=str(transfer.id), state=transfer.state.value,
            action=kind, attempts=transfer.attempts,
        )  # fmt: skip
        return await self._coordinator.step(transfer)

    async def _unfinished(self, uow: PaymentsUnitOfWork) -> int:
        unfinished = await uow.transfers.count_unfinished()
        oldest = await uow.transfers.oldest_unfinished()
        self._metrics.in_doubt(unfinished)
        age_s = 0.0 if oldest is None else (self._leases.clock() - oldest).total_seconds()
        self._metrics.oldest_in_doubt(max(age_s, 0.0))
        return unfinished
