"""The running system as the operator console reads it besides the APIs, through the
kit's readers (the same code as `flotilla trace`, `flotilla events dlq|requeue` and
`flotilla scale`):

- `SpanFolder`: the span files of `FLOTILLA_TRACES_DIR` (`flotilla_kit.tracing.files`);
- `BrokerDeadLetters`: FLOTILLA_DLQ on the broker of `FLOTILLA_NATS_URL`
  (`flotilla_kit.events`: list and requeue, one short connection per call);
- `ScaleRequestFolder`: the supervisor's scale requests in `FLOTILLA_SCALE_REQUESTS_DIR`
  (`flotilla_kit.scale_requests`).

`console_sources(settings)` builds the three for bootstrap.py. Files are read in a thread
(a trace search reads megabytes); every unavailable source says which setting to set."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from urllib.parse import urlsplit

from flotilla_kit import scale_requests
from flotilla_kit.context import parse_traceparent
from flotilla_kit.events import (
    BROKER_TROUBLE,
    DeadLetter,
    DeadLetterNotFound,
    DeadLetterNotRequeueable,
    list_dead_letters,
    requeue_dead_letter,
)
from flotilla_kit.logs import get_logger
from flotilla_kit.tracing.files import TraceSummary, TraceTree, read_trace, recent_traces
from flotilla_web.service_layer.console_ports import (
    ConsoleSources,
    DeadLetterGone,
    DeadLetterRefused,
    DeadLetterView,
    RequeueOutcome,
    ScaleAnswer,
    ScalePending,
    SourceUnavailable,
)
from flotilla_web.settings import WebSettings

__all__ = [
    "BROKER_DEADLINE_S",
    "MAX_TRACE_SPANS",
    "BrokerDeadLetters",
    "ScaleRequestFolder",
    "SpanFolder",
    "console_sources",
    "redacted_url",
]

# A trace of more spans than this is read in part (the page draws fewer still).
MAX_TRACE_SPANS = 2000
# One call to the broker (connect, read or requeue, close) takes at most this long.
BROKER_DEADLINE_S = 5.0
_PAYLOAD_PREVIEW = 300
# What a call to the broker may end with when the broker is not there to answer.
_BROKER_DOWN: tuple[type[BaseException], ...] = (*BROKER_TROUBLE, TimeoutError)
_log = get_logger("flotilla.web.console")


class SpanFolder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def unavailable(self) -> str | None:
        if self.directory.is_dir():
            return None
        return (
            f"Traces are not available here: there is no span folder {self.directory}. "
            "Set FLOTILLA_TRACES_DIR to the folder the services write their spans to "
            "(var/traces under `flotilla up`)."
        )

    async def trace(self, trace_id: str) -> TraceTree | None:
        return await asyncio.to_thread(
            read_trace, self.directory, trace_id, max_spans=MAX_TRACE_SPANS
        )

    async def recent(self, limit: int) -> list[TraceSummary]:
        return await asyncio.to_thread(recent_traces, self.directory, limit=limit)


def redacted_url(url: str) -> str:
    """A broker URL as a page may show it: scheme, host and port, never credentials."""
    shown = []
    for part in url.split(","):
        try:
            split = urlsplit(part.strip())
            port = f":{split.port}" if split.port else ""
        except ValueError:
            shown.append("(an unreadable URL)")
            continue
        shown.append(f"{split.scheme}://{split.hostname or ''}{port}")
    return ", ".join(shown)


def _trace_id(payload: bytes) -> str | None:
    """The trace of a dead event, from its CloudEvent `traceparent`, when it has one."""
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    traceparent = document.get("traceparent") if isinstance(document, dict) else None
    parsed = parse_traceparent(traceparent) if isinstance(traceparent, str) else None
    return parsed[0] if parsed is not None else None


def _view(letter: DeadLetter) -> DeadLetterView:
    text = letter.payload.decode(errors="replace")
    return DeadLetterView(
        sequence=letter.sequence,
        consumer=letter.consumer,
        reason=letter.reason,
        original_subject=letter.original_subject,
        deliveries=letter.deliveries,
        dead_at=letter.dead_at,
        event_id=letter.event_id,
        event_type=letter.event_type,
        payload=text[:_PAYLOAD_PREVIEW],
        payload_cut=len(text) > _PAYLOAD_PREVIEW,
        trace_id=_trace_id(letter.payload),
    )


class BrokerDeadLetters:
    def __init__(self, nats_url: str, *, deadline_s: float = BROKER_DEADLINE_S) -> None:
        self._url = nats_url.strip()
        self._deadline_s = deadline_s

    def unavailable(self) -> str | None:
        if self._url:
            return None
        return (
            "Dead letters are not available here: set FLOTILLA_NATS_URL to the system's "
            "NATS server (`flotilla up` sets it for the web service)."
        )

    def _down(self, error: BaseException) -> SourceUnavailable:
        _log.warning("the broker did not answer the console", error=repr(error))
        return SourceUnavailable(
            f"The NATS server at {redacted_url(self._url)} did not answer "
            f"({type(error).__name__}). Is it running? Check FLOTILLA_NATS_URL."
        )

    async def newest(self, limit: int) -> list[DeadLetterView]:
        try:
            async with asyncio.timeout(self._deadline_s):
                letters = await list_dead_letters(self._url, limit=limit)
        except _BROKER_DOWN as error:
            raise self._down(error) from error
        return [_view(letter) for letter in reversed(letters)]

    async def requeue(self, sequence: int) -> RequeueOutcome:
        try:
            async with asyncio.timeout(self._deadline_s):
                done = await requeue_dead_letter(self._url, sequence)
        except DeadLetterNotFound as gone:
            raise DeadLetterGone(str(gone)) from gone
        except DeadLetterNotRequeueable as refused:
            raise DeadLetterRefused(refused.reason) from refused
        except _BROKER_DOWN as error:
            raise self._down(error) from error
        _log.info(
            "dead letter requeued from the console",
            sequence=sequence,
            subject=done.subject,
            duplicate=done.duplicate,
        )
        return RequeueOutcome(
            sequence=sequence,
            subject=done.subject,
            event_id=done.letter.event_id,
            duplicate=done.duplicate,
        )


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class ScaleRequestFolder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def unavailable(self) -> str | None:
        # The supervisor of `flotilla up` keeps its state in the folder above (var/run);
        # without it, nobody would ever answer a request written here.
        if self.directory.parent.is_dir():
            return None
        return (
            f"Scaling is not available here: no supervisor takes requests in "
            f"{self.directory}. Set FLOTILLA_SCALE_REQUESTS_DIR to the var/run/scale folder "
            "of a running `flotilla up` (under Kubernetes, the HorizontalPodAutoscaler "
            "scales)."
        )

    async def submit(self, service: str, instances: int) -> str:
        request = scale_requests.ScaleRequest(service=service, instances=instances)
        try:
            await asyncio.to_thread(scale_requests.submit, self.directory, request)
        except OSError as error:
            raise SourceUnavailable(
                f"The scale request could not be written to {self.directory} "
                f"({type(error).__name__}). Check FLOTILLA_SCALE_REQUESTS_DIR."
            ) from error
        _log.info("scale requested from the console", scaled_service=service, instances=instances)
        return request.id

    def _pending(self) -> list[ScalePending]:
        now = dt.datetime.now(dt.UTC).timestamp()
        found = []
        for request in scale_requests.pending_requests(self.directory):
            asked = _mtime(scale_requests.request_path(self.directory, request.id))
            found.append(
                ScalePending(
                    id=request.id,
                    service=request.service,
                    shard=request.shard,
                    instances=request.instances,
                    age_s=max(now - asked, 0.0) if asked is not None else 0.0,
                )
            )
        return found

    async def pending(self) -> list[ScalePending]:
        return await asyncio.to_thread(self._pending)

    def _answered(self, limit: int) -> list[ScaleAnswer]:
        return [
            ScaleAnswer(
                id=result.id,
                ok=result.ok,
                detail=result.detail,
                counts=dict(result.counts),
                answered_at=moment,
            )
            for moment, result in scale_requests.answered(self.directory, limit)
        ]

    async def answered(self, limit: int) -> list[ScaleAnswer]:
        return await asyncio.to_thread(self._answered, limit)


def console_sources(settings: WebSettings) -> ConsoleSources:
    return ConsoleSources(
        spans=SpanFolder(settings.traces_path),
        dead_letters=BrokerDeadLetters(settings.nats_url),
        scaling=ScaleRequestFolder(settings.scale_requests_path),
    )
