"""What the operator console reads of the running system besides the APIs: the span
files (traces), the dead-letter queue on the broker, the supervisor's scale requests.
Protocols the adapters (`flotilla_web.adapters.system`) implement, the views they
return, and `ConsoleSources`, which bootstrap.py puts on `app.state.console`.

Each source may be missing where the web service runs (no span files on this machine, no
broker URL, no supervisor under Kubernetes): it then says why and which setting to set
(`unavailable()`, or `SourceUnavailable` from a call), and the page shows that instead of
an error."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from flotilla_kit.tracing.files import TraceSummary, TraceTree
from flotilla_web.domain.console_metrics import SnapshotHistory

__all__ = [
    "ConsoleSources",
    "DeadLetterGone",
    "DeadLetterRefused",
    "DeadLetterView",
    "DeadLetters",
    "RequeueOutcome",
    "ScaleAnswer",
    "ScaleDesk",
    "ScalePending",
    "SourceUnavailable",
    "SpanFiles",
]


class SourceUnavailable(Exception):
    """A source of the console cannot be read here or now; the message says why and
    what to set (`FLOTILLA_...`)."""


class DeadLetterGone(Exception):
    """No dead letter has that sequence number (never had, or requeued already)."""


class DeadLetterRefused(Exception):
    """The dead letter cannot be requeued; the message says why (it stays queued)."""


class SpanFiles(Protocol):
    def unavailable(self) -> str | None:
        """Why no trace can be read here (and what to set), or None."""
        ...

    async def trace(self, trace_id: str) -> TraceTree | None:
        """One trace (at most a bounded number of its spans), or None when no span of it
        is on disk. `trace_id`: 32 lower-case hex digits, checked by the caller."""
        ...

    async def recent(self, limit: int) -> list[TraceSummary]:
        """The newest requests through the gateway, newest first."""
        ...


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    sequence: int
    consumer: str
    reason: str
    original_subject: str
    deliveries: int
    dead_at: dt.datetime | None
    event_id: str | None
    event_type: str | None
    payload: str  # the start of it, as text
    payload_cut: bool  # there is more than `payload`
    trace_id: str | None  # from the event's `traceparent`, when it carries one


@dataclass(frozen=True, slots=True)
class RequeueOutcome:
    sequence: int
    subject: str
    event_id: str | None
    duplicate: bool  # an earlier, interrupted requeue had published it already


class DeadLetters(Protocol):
    def unavailable(self) -> str | None: ...

    async def newest(self, limit: int) -> list[DeadLetterView]:
        """The newest `limit` dead letters, newest first. SourceUnavailable when the
        broker is not set or does not answer."""
        ...

    async def requeue(self, sequence: int) -> RequeueOutcome:
        """Put one back on its subject. DeadLetterGone, DeadLetterRefused, or
        SourceUnavailable."""
        ...


@dataclass(frozen=True, slots=True)
class ScalePending:
    id: str
    service: str
    shard: int | None
    instances: int
    age_s: float  # since it was asked for


@dataclass(frozen=True, slots=True)
class ScaleAnswer:
    id: str
    ok: bool
    detail: str
    counts: Mapping[str, int]
    answered_at: dt.datetime


class ScaleDesk(Protocol):
    def unavailable(self) -> str | None: ...

    async def submit(self, service: str, instances: int) -> str:
        """Hand a request to the supervisor; its id. SourceUnavailable without one."""
        ...

    async def pending(self) -> list[ScalePending]:
        """Requests the supervisor has not answered yet, oldest first."""
        ...

    async def answered(self, limit: int) -> list[ScaleAnswer]:
        """The newest `limit` answers, newest first."""
        ...


@dataclass(frozen=True, slots=True)
class ConsoleSources:
    """What the console reads besides the APIs, and what it remembers between requests
    (the gateways' last snapshots, for rates)."""

    spans: SpanFiles
    dead_letters: DeadLetters
    scaling: ScaleDesk
    history: SnapshotHistory = field(default_factory=SnapshotHistory)
