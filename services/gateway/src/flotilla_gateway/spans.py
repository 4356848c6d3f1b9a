"""The gateway's server spans, written by hand: one per forwarded request.

The SDK's `start_span` / `end` cost about 15 us per request here (a span object, its
attributes dict, the sampler, a lock in the processor): as much as the whole proxied
request. The gateway already has everything a span holds (the trace id, the span id it
sends upstream in `traceparent`, the caller's parent, timings, route, status), so the
request path only appends one tuple (well under a microsecond); the spans are made and
handed to the kit's `BatchSpanProcessor` (JSON lines or OTLP) a moment later, off the
request path, like the access log's lines.

The span id is the one the gateway puts in the `traceparent` it forwards, so each
service's server span is this span's child.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from flotilla_kit.batches import Batched
from flotilla_kit.tracing import Tracing

__all__ = ["SpanLog"]

# What `record` keeps per request until the batch goes: started and elapsed
# (perf_counter ns), trace id, span id, the caller's raw traceparent, method, path,
# route, status, upstream instance, request id.
_Pending = tuple[
    int, int, str, str, "bytes | None", bytes, str, str, int, "str | None", str
]  # fmt: skip

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class SpanLog:
    def __init__(self, tracing: Tracing, *, flush_after_s: float = 0.2, batch: int = 512) -> None:
        self._tracing = tracing
        self._batched = Batched(self._export, flush_after_s=flush_after_s, batch=batch)
        self._resource = tracing.provider.resource
        ratio = tracing.sample_ratio
        # Whether a trace the gateway starts is recorded (a caller's flag is followed).
        self.sample = _always if ratio >= 1 else _ratio_sampler(ratio)

    def record(
        self,
        started_ns: int,
        elapsed_ns: int,
        trace_id: str,
        span_id: str,
        parent: bytes | None,
        method: bytes,
        path: str,
        route: str,
        status: int,
        instance: str | None,
        request_id: str,
    ) -> None:
        self._batched.add(
            (started_ns, elapsed_ns, trace_id, span_id, parent, method, path, route, status,
             instance, request_id)
        )  # fmt: skip

    def flush(self) -> None:
        """Make the collected spans and queue them for export (also at shutdown)."""
        self._batched.flush()

    def discard(self) -> None:
        """Drop the spans collected and not made yet (a benchmark of `record` alone)."""
        self._batched.discard()

    def _export(self, pending: list[_Pending]) -> None:
        # perf_counter -> wall clock, measured now: the offset hardly moves in 0.2 s.
        offset = time.time_ns() - time.perf_counter_ns()
        export = self._tracing.export
        for span in pending:
            export(self._span(span, offset))

    def _span(self, pending: _Pending, offset: int) -> ReadableSpan:
        started, elapsed, trace_id, span_id, raw_parent, method, path, route, status, \
            instance, request_id = pending  # fmt: skip
        trace_int = int(trace_id, 16)
        parent = None
        if raw_parent is not None:
            # Only a valid traceparent got here (its trace id is this trace's).
            parent = SpanContext(
                trace_int, int(raw_parent.strip()[36:52], 16), is_remote=True,
                trace_flags=_SAMPLED,
            )  # fmt: skip
        verb = method.decode("latin-1")
        attributes: dict[str, str | int] = {
            "http.request.method": verb,
            "url.path": path,
            "http.route": route,
            "http.response.status_code": status,
            "http.request.id": request_id,
        }
        if instance is not None:
            attributes["flotilla.upstream.instance"] = instance
        return ReadableSpan(
            name=f"{verb} {route}",
            context=SpanContext(trace_int, int(span_id, 16), False, _SAMPLED),
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            kind=SpanKind.SERVER,
            status=Status(StatusCode.ERROR) if status >= 500 else Status(StatusCode.UNSET),
            start_time=started + offset,
            end_time=started + elapsed + offset,
        )


def _always() -> bool:
    return True


def _ratio_sampler(ratio: float) -> Callable[[], bool]:
    draw = random.Random().random  # noqa: S311 - sampling, not secrecy

    def sample() -> bool:
        return draw() < ratio

    return sample
