"""OpenTelemetry traces: one provider per process, spans written by hand where they matter.

`install_tracing(settings)` (called by each service's `serve` and `relay` commands) sets up
the SDK: a parent-based ratio sampler, a `BatchSpanProcessor`, and an exporter: OTLP over
HTTP when `otlp_endpoint` is set, else `JsonLinesSpanExporter` writing one JSON object per
span to `<traces_dir>/<instance>.jsonl` (what `flotilla trace` reads). Spans still queued
are flushed when the process exits (the provider's atexit hook) or on `shutdown()`.

Spans are made here by hand rather than by the contrib instrumentations: the ASGI one adds
two internal spans per request (`http send`, `http receive`) and wraps every message, the
SQLAlchemy one a span per statement; here the service makes one server span per request
(`ObservabilityMiddleware`), one client span per outbound HTTP request (the kit's
`HttpClient`) and gRPC call (`client_interceptors`), one server span per gRPC call
(`TracingServerInterceptor`), one span per database transaction (`database_span`, with
the statement count and the first statement), and a producer / consumer span per event
(the relay and the consumer, parented by the CloudEvent's `traceparent`). The W3C
`traceparent` goes out on every HTTP request and gRPC call made inside a span.

Without `install_tracing` (unit tests, tools) nothing is recorded: `tracer()` is a no-op
tracer and the helpers only pass the context on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import grpc
from grpc import aio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from flotilla_kit.context import (
    RequestContext,
    current_context,
    new_span_id,
    parse_traceparent,
    reset_context,
    set_context,
)
from flotilla_kit.settings import ServiceSettings

__all__ = [
    "SPAN_FILE_SUFFIX",
    "DatabaseSpan",
    "JsonLinesSpanExporter",
    "Tracing",
    "TracingServerInterceptor",
    "client_interceptors",
    "context_from_traceparent",
    "current_traceparent",
    "database_span",
    "install_tracing",
    "messaging_span",
    "span_record",
    "tracer",
    "tracing",
    "uninstall_tracing",
    "unsampled_parent",
]

SPAN_FILE_SUFFIX = ".jsonl"
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = "flotilla"
_STATEMENT_CHARS = 200
_TRACEPARENT = "traceparent"


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as the JSON object written to the traces directory."""
    context = span.context
    parent = span.parent
    resource = span.resource.attributes
    return {
        "trace_id": _hex(context.trace_id, 32) if context else None,
        "span_id": _hex(context.span_id, 16) if context else None,
        "parent_span_id": _hex(parent.span_id, 16) if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": resource.get("service.name"),
        "instance": resource.get("service.instance.id"),
        "start_unix_nano": span.start_time,
        "end_unix_nano": span.end_time,
        "status": span.status.status_code.name,
        "status_message": span.status.description,
        "attributes": dict(span.attributes or {}),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends each exported span as one JSON line to `path` (created with its folder).
    Lines are whole: a batch is written with one `write` and flushed, under a lock.

    The file is bounded: once it holds `max_bytes`, it becomes `<name>.old.jsonl` (the
    previous one is dropped) and a new one starts, so an instance keeps at most twice
    `max_bytes` of spans (a pod's small emptyDir survives a week of traffic). A file that
    cannot be written (a read-only filesystem) is said once in the log, not dropped
    silently."""

    def __init__(self, path: Path, *, max_bytes: int = 8 * 2**20) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        with self._lock:
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(text)
                self._file.flush()
                if self._file.tell() >= self.max_bytes:
                    self._rotate()
            except OSError as error:
                if not self._failing:
                    logging.getLogger("flotilla.tracing").warning(
                        "spans cannot be written to %s, so they are dropped (set "
                        "FLOTILLA_OTLP_ENDPOINT, or FLOTILLA_TRACES_DIR to a writable folder): %s",
                        self.path,
                        error,
                    )
                self._failing = True
                return SpanExportResult.FAILURE
        self._failing = False
        return SpanExportResult.SUCCESS

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        self.path.replace(self.path.with_name(self.path.name.replace(".jsonl", ".old.jsonl")))

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


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


class _Installed:
    """The process's one `Tracing` (None until `install_tracing`)."""

    tracing: Tracing | None = None


_installed = _Installed()
_noop = trace.NoOpTracer()


def tracing() -> Tracing | None:
    return _installed.tracing


def tracer() -> trace.Tracer:
    active = _installed.tracing
    return active.tracer if active is not None else _noop


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
    active = _installed.tracing = Tracing(
        service=settings.service_name,
        instance=name,
        exporter=exporter,
        sample_ratio=settings.trace_sample_ratio,
        export_delay_s=settings.trace_export_delay_s,
    )
    return active


def uninstall_tracing() -> None:
    """Flush and forget the process's tracing (tests)."""
    active, _installed.tracing = _installed.tracing, None
    if active is not None:
        active.shutdown()


# -- context -------------------------------------------------------------------------------


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


def _traceparent_of(span: Span) -> str | None:
    context = span.get_span_context()
    if not context.is_valid:
        return None
    flags = "01" if context.trace_flags.sampled else "00"
    return f"00-{_hex(context.trace_id, 32)}-{_hex(context.span_id, 16)}-{flags}"


def current_traceparent() -> str | None:
    """The `traceparent` to send on from here: the current span's, or, in a request that
    is not sampled (no span), the kit's request context's (flag 00, so the next service
    records nothing either); None outside any request."""
    found = _traceparent_of(trace.get_current_span())
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
            _hex(context.trace_id, 32),
            _hex(context.span_id, 16),
            context.trace_flags.sampled,
        )
    )
    try:
        yield
    finally:
        reset_context(token)


def _failed(span: Span, error: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))


# -- gRPC ------------------------------------------------------------------------------------


def _grpc_service_method(full: str) -> tuple[str, str]:
    service, _, method = full.lstrip("/").partition("/")
    return service, method


def _with_traceparent(details: aio.ClientCallDetails, traceparent: str) -> aio.ClientCallDetails:
    metadata = [(k, v) for k, v in (details.metadata or ()) if k != _TRACEPARENT]
    metadata.append((_TRACEPARENT, traceparent))
    return aio.ClientCallDetails(
        details.method,
        details.timeout,
        aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


class _UnaryUnaryClientInterceptor(aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[[aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        active = _installed.tracing
        if active is None or not trace.get_current_span().is_recording():
            traceparent = current_traceparent()
            if traceparent is None:
                return await continuation(client_call_details, request)
            return await continuation(_with_traceparent(client_call_details, traceparent), request)
        full: object = client_call_details.method  # bytes in the stubs, str at times
        method = full.decode() if isinstance(full, bytes) else str(full)
        service, name = _grpc_service_method(method)
        with active.tracer.start_as_current_span(
            method.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            traceparent = _traceparent_of(span)
            details = (
                client_call_details
                if traceparent is None
                else _with_traceparent(client_call_details, traceparent)
            )
            try:
                call = await continuation(details, request)
                code = await call.code()
            except Exception as error:
                _failed(span, error)
                raise
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code != grpc.StatusCode.OK:
                span.set_status(Status(StatusCode.ERROR, code.name))
            return call


def client_interceptors() -> list[aio.ClientInterceptor]:
    """For `aio.secure_channel(..., interceptors=...)`: unary calls get a client span.
    (Streams are left alone: one span for a long-lived stream would say nothing.)"""
    return [_UnaryUnaryClientInterceptor()]


class TracingServerInterceptor(aio.ServerInterceptor):
    """A server span per unary gRPC call, parented by the caller's `traceparent`
    metadata; also the kit's request context for the handler's log lines."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        active = _installed.tracing
        if (
            active is None
            or handler is None
            or handler.request_streaming
            or handler.response_streaming
            or handler.unary_unary is None
        ):
            return handler
        method = handler_call_details.method
        metadata: Mapping[str, Any] = dict(handler_call_details.invocation_metadata or ())
        raw_parent = str(metadata.get(_TRACEPARENT) or "")
        service, name = _grpc_service_method(method)
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        behaviour = handler.unary_unary
        unsampled = unsampled_parent(raw_parent)
        if unsampled is not None:
            return grpc.unary_unary_rpc_method_handler(
                _untraced(active, behaviour, method.lstrip("/"), unsampled, attributes),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        parent = context_from_traceparent(raw_parent)
        tracer_ = active.tracer

        async def traced(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            with (
                tracer_.start_as_current_span(
                    method.lstrip("/"),
                    context=parent,
                    kind=SpanKind.SERVER,
                    attributes=attributes,
                    record_exception=False,
                    set_status_on_exception=False,
                ) as span,
                bound_request_context(span, _hex(span.get_span_context().span_id, 16)),
            ):
                try:
                    return await behaviour(request, context)  # type: ignore[arg-type]
                except Exception as error:
                    _failed(span, error)
                    raise
                finally:
                    code = context.code()
                    if code is not None and code != grpc.StatusCode.OK:
                        status = code if isinstance(code, grpc.StatusCode) else None
                        span.set_status(
                            Status(StatusCode.ERROR, status.name if status else str(code))
                        )

        return grpc.unary_unary_rpc_method_handler(
            traced,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


# What a server failed at (OpenTelemetry's gRPC conventions); a NOT_FOUND or a
# FAILED_PRECONDITION is the caller's answer, not the server's error.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _untraced(
    active: Tracing,
    behaviour: Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]],
    name: str,
    parent: tuple[str, str],
    attributes: Mapping[str, str | int],
) -> Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    """A call whose caller did not sample its trace: no span, the trace's ids in the
    request context (logs, callees), and a span after all if it fails."""
    trace_id, parent_span_id = parent

    async def serve(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        span_id = new_span_id()
        request_context = RequestContext(span_id, trace_id, span_id, sampled=False)
        token = set_context(request_context)
        started = time.time_ns()
        failure: str | None = None
        try:
            return await behaviour(request, context)
        except aio.AbortError:
            raise  # the handler answered with a status: judged by its code below
        except Exception as error:
            failure = type(error).__name__
            raise
        finally:
            reset_context(token)
            code = context.code()
            if failure is not None or code in _SERVER_ERRORS:
                active.error_span(
                    name=name, kind=SpanKind.SERVER, context=request_context,
                    parent_span_id=parent_span_id, start_ns=started, end_ns=time.time_ns(),
                    attributes={**attributes, "rpc.grpc.status_code": _code_value(code)},
                    message=failure or (code.name if isinstance(code, grpc.StatusCode) else None),
                )  # fmt: skip

    return serve


def _code_value(code: object) -> int:
    if isinstance(code, grpc.StatusCode):
        value = code.value[0]
        return int(value) if isinstance(value, int) else 2
    return 2 if code is not None else 0  # UNKNOWN, or OK


# -- events ----------------------------------------------------------------------------------


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


# -- database ----------------------------------------------------------------------------------


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
    active = _installed.tracing
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
