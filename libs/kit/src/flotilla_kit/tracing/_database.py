"""Database instrumentation: one span per transaction (begin to commit or rollback) with
its statement count and first statement, made only inside a recorded span.

`flotilla_kit.db` imports this module alone (through the package's lazy names): it needs
OpenTelemetry's API and the kit's request context, not the SDK, gRPC or the settings.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from flotilla_kit.context import current_context
from flotilla_kit.tracing._state import installed

__all__ = ["DatabaseSpan", "database_span"]

_STATEMENT_CHARS = 200


class DatabaseSpan:
    """The span of one database transaction: its statement count and first statement."""

    __slots__ = ("_count", "_span")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._count = 0

    def statement(self, sql: str) -> None:
        self._count += 1
        if self._count == 1:
            self._span.set_attribute("db.query.text", " ".join(sql.split())[:_STATEMENT_CHARS])

    def end(self, outcome: str) -> None:
        self._span.set_attribute("flotilla.db.outcome", outcome)
        self._span.set_attribute("flotilla.db.statements", self._count)
        self._span.end()


def database_span(*, system: str, name: str, write: bool) -> DatabaseSpan | None:
    """A span for a transaction beginning now (begin to commit or rollback), a child of the
    current span; None when that span is not recorded. A span per statement would cost as
    much as a short statement on SQLite and say less. Transactions outside any span
    (polling loops: relays, recovery, expiry) are not recorded: they would each be a trace
    of their own, every second."""
    active = installed.tracing
    if active is None:
        return None
    # The request context says at once whether the work in hand is sampled (most is
    # not); only then is OpenTelemetry's current span looked up.
    context = current_context()
    if context is None or not context.sampled or not trace.get_current_span().is_recording():
        return None
    span = active.tracer.start_span(
        f"{system} {'write' if write else 'read'} transaction",
        kind=SpanKind.CLIENT,
        attributes={"db.system.name": system, "db.namespace": name, "flotilla.db.write": write},
    )
    return DatabaseSpan(span)
