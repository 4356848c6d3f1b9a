"""Events instrumentation: a producer span per event the relay publishes and a consumer
span per event a consumer processes, each a child of the span the event was made in (its
CloudEvent `traceparent`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.trace import Span, SpanKind

from flotilla_kit.tracing._propagation import bound_request_context, context_from_traceparent
from flotilla_kit.tracing._state import tracer

__all__ = ["messaging_span"]


@contextmanager
def messaging_span(
    operation: str,
    subject: str,
    *,
    traceparent: str | None,
    event_id: str,
    kind: SpanKind,
) -> Iterator[Span]:
    """A producer (`publish`) or consumer (`process`) span for one event on NATS, a child
    of the span the event was made in (its CloudEvent `traceparent`); also the kit's
    request context, so what a handler logs or publishes carries the trace on."""
    with tracer().start_as_current_span(
        f"{operation} {subject}",
        context=context_from_traceparent(traceparent),
        kind=kind,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": operation,
            "messaging.destination.name": subject,
            "messaging.message.id": event_id,
        },
    ) as span:
        if not span.get_span_context().is_valid:
            yield span
            return
        with bound_request_context(span, event_id):
            yield span
