"""A participant in doubt asks the coordinator.

A branch PREPARED for longer than a threshold has probably lost its coordinator's phase
two (the coordinator crashed, or its calls did not get through). The participant cannot
decide alone (its YES vote is a promise), so it asks the coordinator how the transfer
ended and does what it says; "pending" means not decided yet, ask again next time.
The coordinator keeps driving its transfers too; whichever arrives first applies the
decision and the other finds it done.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from flotilla_accounts.domain import Outcome
from flotilla_accounts.service_layer.errors import AccountsError, CoordinatorUnreachable
from flotilla_accounts.service_layer.participant import Participant
from flotilla_accounts.service_layer.ports import Coordinator, ParticipantMetrics
from flotilla_kit.logs import get_logger
from flotilla_kit.recovery import run_paced

__all__ = ["RECOVERY_ACTOR", "Recovery", "TickReport"]

_log = get_logger("flotilla.accounts.recovery")

# Who the audit log names for what recovery does (the decision itself is the coordinator's).
RECOVERY_ACTOR = "accounts:recovery"


@dataclass(slots=True)
class TickReport:
    committed: list[tuple[str, str]] = field(default_factory=list)
    aborted: list[tuple[str, str]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    in_doubt: int = 0  # after this tick's actions


class Recovery:
    def __init__(
        self,
        participant: Participant,
        coordinator: Coordinator | None,
        *,
        in_doubt_after: dt.timedelta,
        metrics: ParticipantMetrics,
        batch: int = 100,
    ) -> None:
        self._participant = participant
        self._coordinator = coordinator
        self._in_doubt_after = in_doubt_after
        self._metrics = metrics
        self._batch = batch
        self._lock = asyncio.Lock()  # the loop and a test's tick never overlap

    async def tick(self) -> TickReport:
        """One pass: ask about every branch in doubt (a batch of them) and act on the
        answers; then refresh the in-doubt gauge."""
        async with self._lock:
            report = TickReport()
            if self._coordinator is not None:
                await self._resolve(self._coordinator, report)
            report.in_doubt = await self._participant.count_in_doubt(self._in_doubt_after)
            self._metrics.in_doubt(report.in_doubt)
            return report

    async def _resolve(self, coordinator: Coordinator, report: TickReport) -> None:
        branches = await self._participant.in_doubt(self._in_doubt_after, limit=self._batch)
        by_transfer: dict[str, list[str]] = {}
        for branch in branches:
            by_transfer.setdefault(branch.transfer_id, []).append(branch.branch_id)
        for transfer_id, branch_ids in by_transfer.items():
            try:
                outcome = await coordinator.outcome(transfer_id)
            except CoordinatorUnreachable as exc:
                _log.warning(
                    "no outcome for an in-doubt transfer", transfer_id=transfer_id, error=str(exc)
                )
                self._metrics.recovered("error")
                report.errors.append(transfer_id)
                continue
            if outcome is Outcome.PENDING:
                self._metrics.recovered("pending")
                report.pending.append(transfer_id)
                continue
            for branch_id in branch_ids:
                await self._apply(outcome, transfer_id, branch_id, report)

    async def _apply(
        self, outcome: Outcome, transfer_id: str, branch_id: str, report: TickReport
    ) -> None:
        try:
            if outcome is Outcome.COMMIT:
                await self._participant.commit(
                    transfer_id=transfer_id, branch_id=branch_id, actor=RECOVERY_ACTOR
                )
                report.committed.append((transfer_id, branch_id))
            else:
                await self._participant.abort(
                    transfer_id=transfer_id, branch_id=branch_id, actor=RECOVERY_ACTOR
                )
                report.aborted.append((transfer_id, branch_id))
        except AccountsError as exc:
            # The branch changed under us in a way a correct coordinator never causes
            # (the participant has logged it); the others still get their turn.
            self._metrics.recovered("error")
            report.errors.append(transfer_id)
            _log.error("recovery could not apply the outcome", error=str(exc))
            return
        self._metrics.recovered(outcome.value)

    async def run(self, interval_s: float) -> None:
        """Tick every `interval_s` while branches are in doubt, less often while none is
        (`flotilla_kit.recovery.run_paced`), until cancelled; a failed tick is logged, not
        fatal."""

        async def found_work() -> bool:
            report = await self.tick()
            return report.in_doubt > 0 or bool(report.errors)

        await run_paced(
            found_work, every_s=interval_s, log=_log, failed="recovery tick failed", at_once=False
        )
