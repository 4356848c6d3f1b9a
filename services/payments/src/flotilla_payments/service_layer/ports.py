"""What the use cases need from the outside world; adapters provide it, tests fake it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from flotilla_kit.recovery import LeasedRows
from flotilla_kit.resource_keys import ResourceKeys
from flotilla_kit.unit_of_work import UnitOfWork
from flotilla_kit.unit_of_work import UnitOfWorkFactory as KitUnitOfWorkFactory
from flotilla_payments.domain import Branch, Refusal, Transfer, TransferPath, TransferState, Vote
from flotilla_payments.service_layer.faults import FaultPoint

__all__ = [
    "AuditTrail",
    "BranchCall",
    "EventOutbox",
    "Faults",
    "LedgerClient",
    "LocalOutcome",
    "LocalTransferCall",
    "ParticipantUnavailable",
    "PaymentsUnitOfWork",
    "PrepareCall",
    "ProtocolViolation",
    "TransferMetrics",
    "TransferRepository",
    "UnitOfWorkFactory",
]


# -- the ledger shards (2PC participants) ---------------------------------------------------


class ParticipantUnavailable(Exception):
    """No answer from any instance of the shard (unreachable, deadline passed, our token
    refused): the call may or may not have taken effect."""


class ProtocolViolation(Exception):
    """The participant answered what the protocol does not allow (a commit of a branch it
    never prepared, an unset vote, ...). Logged as an error: it is a bug somewhere."""


@dataclass(frozen=True, slots=True)
class PrepareCall:
    shard: int
    transfer_id: str
    branch: Branch  # the debit branch holds the money, the credit branch records it pending
    account_id: str
    amount_minor: int
    currency: str
    required_owner: str  # empty: any owner
    reference: str


@dataclass(frozen=True, slots=True)
class BranchCall:
    shard: int
    transfer_id: str
    branch: Branch


@dataclass(frozen=True, slots=True)
class LocalTransferCall:
    shard: int
    transfer_id: str
    from_account: str
    to_account: str
    amount_minor: int
    currency: str
    required_owner: str
    reference: str


@dataclass(frozen=True, slots=True)
class LocalOutcome:
    applied: bool
    refusal: Refusal | None = None


class LedgerClient(Protocol):
    """The ledger shards, by shard number. Every call is idempotent per (transfer, branch),
    so a call whose outcome is unknown is simply made again."""

    async def prepare(self, call: PrepareCall) -> Vote:
        """YES, or NO with a refusal; raises ParticipantUnavailable or ProtocolViolation."""

    async def commit(self, call: BranchCall) -> None:
        """Returns once the participant says COMMITTED."""

    async def abort(self, call: BranchCall) -> None:
        """Returns once the participant says ABORTED (a tombstone if it never prepared)."""

    async def transfer(self, call: LocalTransferCall) -> LocalOutcome:
        """Both sides on one shard, in one of its transactions."""


# -- storage ---------------------------------------------------------------------------------


class TransferRepository(LeasedRows[uuid.UUID, Transfer], Protocol):
    """The transfer log; the coordinator's leases and retries as `flotilla_kit.recovery`
    drives them."""

    async def add(self, transfer: Transfer) -> None: ...

    async def get(self, transfer_id: uuid.UUID) -> Transfer | None: ...

    async def page_for_initiator(
        self, initiator: str, *, limit: int, after: Transfer | None
    ) -> list[Transfer]:
        """Newest first; `after` is the last transfer of the previous page."""

    async def save_transition(self, transfer: Transfer, *, expected: TransferState) -> bool:
        """Compare-and-set: store the state (and its timestamps, refusal, lease) only if the
        stored state is still `expected`."""

    async def count_unfinished(self) -> int: ...

    async def oldest_unfinished(self) -> dt.datetime | None:
        """When the oldest unfinished transfer was created; None when every one is final."""

    async def unfinished(self, *, created_before: dt.datetime | None) -> list[Transfer]:
        """Oldest first."""


class AuditTrail(Protocol):
    """Security-relevant events, recorded in the same transaction as the change."""

    async def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, Any],
        outcome: str = "success",
    ) -> None: ...


class EventOutbox(Protocol):
    """Events for other services, stored in the same transaction as the change they
    describe; the relay publishes them once that transaction has committed (under the
    event's type, and `route` as the subject's last token when given)."""

    async def add(
        self, event: str, *, subject: str, data: dict[str, Any], route: str | None = None
    ) -> None: ...


class PaymentsUnitOfWork(UnitOfWork, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def transfers(self) -> TransferRepository: ...

    @property
    def idempotency(self) -> ResourceKeys:
        """The Idempotency-Keys of POST /transfers, each naming the transfer it created."""

    @property
    def audit(self) -> AuditTrail: ...

    @property
    def outbox(self) -> EventOutbox: ...


UnitOfWorkFactory = KitUnitOfWorkFactory[PaymentsUnitOfWork]


# -- faults, metrics -------------------------------------------------------------------------


class Faults(Protocol):
    def hit(self, point: FaultPoint) -> None:
        """Return, or end the process there (fault injection in tests and chaos runs)."""


class TransferMetrics(Protocol):
    def transfer_finished(self, path: TransferPath, outcome: str) -> None:
        """`outcome`: committed, refused (by a participant) or aborted (technical)."""

    def prepare_took(self, seconds: float) -> None: ...

    def decision_took(self, path: TransferPath, seconds: float) -> None:
        """From the request to the durable decision."""

    def phase_two_took(self, seconds: float) -> None:
        """From the durable decision to every participant's acknowledgement."""

    def in_doubt(self, count: int) -> None: ...

    def oldest_in_doubt(self, age_s: float) -> None:
        """Age of the oldest unfinished transfer (0 when there is none)."""

    def recovery_action(self, kind: str) -> None: ...
