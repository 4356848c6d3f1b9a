"""W3C trace context: reading a `traceparent`, writing the current one, and binding a span
to the kit's request context (so log lines carry its trace id). The HTTP middleware, the
HTTP client, gRPC and events all pass the trace on through these."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Status, StatusCode, TraceFlags

from flotilla_kit.context import (
    RequestContext,
    current_context,
    parse_traceparent,
    reset_context,
    set_context,
)

__all__ = [
    "bound_request_context",
    "context_from_traceparent",
    "current_traceparent",
    "failed",
    "hex_id",
    "traceparent_of",
    "unsampled_parent",
]


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def context_from_traceparent(value: str | None) -> otel_context.Context | None:
    """An OpenTelemetry context whose parent is the remote span a W3C `traceparent`
    names, or None when it is absent or invalid."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 1))
    return trace.set_span_in_context(NonRecordingSpan(parent))


def traceparent_of(span: Span) -> str | None:
    context = span.get_span_context()
    if not context.is_valid:
        return None
    flags = "01" if context.trace_flags.sampled else "00"
    return f"00-{hex_id(context.trace_id, 32)}-{hex_id(context.span_id, 16)}-{flags}"


def current_traceparent() -> str | None:
    """The `traceparent` to send on from here: the current span's, or, in a request that
    is not sampled (no span), the kit's request context's (flag 00, so the next service
    records nothing either); None outside any request."""
    found = traceparent_of(trace.get_current_span())
    if found is not None:
        return found
    context = current_context()
    return context.traceparent() if context is not None else None


def unsampled_parent(traceparent: str | None) -> tuple[str, str] | None:
    """(trace id, parent span id) when `traceparent` is valid and says not sampled: the
    request is then served without spans (its ids still go on to logs and callees)."""
    parsed = parse_traceparent(traceparent)
    if parsed is None or parsed[1]:
        return None
    assert traceparent is not None
    return parsed[0], traceparent.strip()[36:52]


@contextmanager
def bound_request_context(span: Span, request_id: str) -> Iterator[None]:
    """Make `span` the kit's request context too (log lines carry its trace id)."""
    context = span.get_span_context()
    token = set_context(
        RequestContext(
            request_id,
            hex_id(context.trace_id, 32),
            hex_id(context.span_id, 16),
            context.trace_flags.sampled,
        )
    )
    try:
        yield
    finally:
        reset_context(token)


def failed(span: Span, error: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
