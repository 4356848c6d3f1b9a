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

One module per concern:

| module | what |
|---|---|
| `_setup` | `Tracing` (provider, sampler, processor), `install_tracing`, `uninstall_tracing` |
| `_exporter` | `JsonLinesSpanExporter`, `span_record`, `SPAN_FILE_SUFFIX` |
| `_state` | the installed `Tracing`: `tracing()`, `tracer()` |
| `_propagation` | W3C `traceparent` in and out, the span as the request context (HTTP, all) |
| `_grpc` | `client_interceptors`, `TracingServerInterceptor` |
| `_database` | `database_span`, `DatabaseSpan` (what `flotilla_kit.db` imports) |
| `_messaging` | `messaging_span` (the relay and the consumer) |
| `files` | reading the span files back: `read_trace`, `recent_traces`, `TraceTree` (no SDK) |

The names below are loaded on first use, each from its own module, so that importing one
part does not import them all: `flotilla_kit.db` takes `database_span` without the SDK,
gRPC or the settings, and a process that never serves gRPC does not load grpc for tracing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flotilla_kit.tracing._database import DatabaseSpan, database_span
    from flotilla_kit.tracing._exporter import (
        SPAN_FILE_SUFFIX,
        JsonLinesSpanExporter,
        span_record,
    )
    from flotilla_kit.tracing._grpc import TracingServerInterceptor, client_interceptors
    from flotilla_kit.tracing._messaging import messaging_span
    from flotilla_kit.tracing._propagation import (
        context_from_traceparent,
        current_traceparent,
        unsampled_parent,
    )
    from flotilla_kit.tracing._setup import Tracing, install_tracing, uninstall_tracing
    from flotilla_kit.tracing._state import tracer, tracing

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

# Each public name and the module that defines it.
_HOMES = {
    "SPAN_FILE_SUFFIX": "_exporter",
    "DatabaseSpan": "_database",
    "JsonLinesSpanExporter": "_exporter",
    "Tracing": "_setup",
    "TracingServerInterceptor": "_grpc",
    "client_interceptors": "_grpc",
    "context_from_traceparent": "_propagation",
    "current_traceparent": "_propagation",
    "database_span": "_database",
    "install_tracing": "_setup",
    "messaging_span": "_messaging",
    "span_record": "_exporter",
    "tracer": "_state",
    "tracing": "_state",
    "uninstall_tracing": "_setup",
    "unsampled_parent": "_propagation",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
