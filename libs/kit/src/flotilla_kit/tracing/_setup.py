"""Setting up the process's tracing: the tracer provider (parent-based ratio sampler, a
`BatchSpanProcessor`) and its exporter, OTLP over HTTP when `otlp_endpoint` is set, else
the JSON lines file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from flotilla_kit.context import RequestContext
from flotilla_kit.tracing._exporter import SPAN_FILE_SUFFIX, JsonLinesSpanExporter
from flotilla_kit.tracing._state import installed

if TYPE_CHECKING:
    from flotilla_kit.settings import ServiceSettings

__all__ = ["Tracing", "install_tracing", "uninstall_tracing"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = "flotilla"


class Tracing:
    """The process's tracer provider and what it was made from."""

    def __init__(
        self,
        *,
        service: str,
        instance: str,
        exporter: SpanExporter,
        sample_ratio: float = 1.0,
        export_delay_s: float = 1.0,
    ) -> None:
        self.service = service
        self.instance = instance
        self.exporter = exporter
        self.sample_ratio = sample_ratio
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service, "service.instance.id": instance}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        # A queue for a few seconds of a busy gateway (its spans come in batches).
        self.processor = BatchSpanProcessor(
            exporter, max_queue_size=16_384, schedule_delay_millis=max(1.0, export_delay_s * 1000)
        )
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer(_SCOPE)

    def export(self, span: ReadableSpan) -> None:
        """Queue a span made elsewhere (the gateway writes its own) for export."""
        self.processor.on_end(span)

    def error_span(
        self,
        *,
        name: str,
        kind: SpanKind,
        context: RequestContext,
        parent_span_id: str | None,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, str | int],
        message: str | None = None,
    ) -> None:
        """Record the span of a failed request that was not sampled: errors are always
        kept. It has the ids the request already passed on (its `traceparent`), so spans
        of failures further down the same request hang under it."""
        trace_id = int(context.trace_id, 16)
        parent = None
        if parent_span_id is not None:
            parent = SpanContext(trace_id, int(parent_span_id, 16), True, _SAMPLED)
        self.export(
            ReadableSpan(
                name=name,
                context=SpanContext(trace_id, int(context.span_id, 16), False, _SAMPLED),
                parent=parent,
                resource=self.provider.resource,
                attributes=dict(attributes),
                kind=kind,
                status=Status(StatusCode.ERROR, message),
                start_time=start_ns,
                end_time=end_ns,
            )
        )

    def shutdown(self) -> None:
        """Export what is queued, then stop."""
        self.provider.shutdown()


def _otlp_url(endpoint: str) -> str:
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def install_tracing(settings: ServiceSettings, instance: str | None = None) -> Tracing | None:
    """Set up this process's tracing from its settings; None when
    `tracing_enabled` is off. `instance` names the span file (default
    `<service>-<instance id>`)."""
    if not settings.tracing_enabled:
        return None
    name = instance or f"{settings.service_name}-{settings.instance_id}"
    exporter: SpanExporter
    if settings.otlp_endpoint:
        # Imported only when used: it brings protobuf and an HTTP stack with it.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        exporter = OTLPSpanExporter(endpoint=_otlp_url(settings.otlp_endpoint))
    else:
        exporter = JsonLinesSpanExporter(
            settings.traces_path / f"{name}{SPAN_FILE_SUFFIX}",
            max_bytes=settings.trace_file_max_bytes,
        )
    uninstall_tracing()
    active = installed.tracing = Tracing(
        service=settings.service_name,
        instance=name,
        exporter=exporter,
        sample_ratio=settings.trace_sample_ratio,
        export_delay_s=settings.trace_export_delay_s,
    )
    return active


def uninstall_tracing() -> None:
    """Flush and forget the process's tracing (tests)."""
    active, installed.tracing = installed.tracing, None
    if active is not None:
        active.shutdown()
