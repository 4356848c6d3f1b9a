"""The one ASGI middleware every service runs: request context, body size limit, RED
metrics, access log, and the last-resort 500.

Plain ASGI rather than `BaseHTTPMiddleware`: it adds one function call per request and does
not buffer bodies. It sits outside FastAPI's own error handling, which is why the body
limit and the 500 are answered here: this is the last place that still knows the request id.
"""

from __future__ import annotations

import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flotilla_kit.context import (
    RequestContext,
    new_request_id,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    reset_context,
    set_context,
    valid_request_id,
)
from flotilla_kit.logs import get_logger
from flotilla_kit.metrics import HttpMetrics
from flotilla_kit.problems import Problem
from flotilla_kit.tracing import context_from_traceparent, tracing

__all__ = ["ObservabilityMiddleware"]

_UNMATCHED = "<unmatched>"
# Probes and scrapes run every second; logging each would drown the requests that matter.
_QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
_log = get_logger("flotilla.access")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else _UNMATCHED


class _Exchange:
    """One request on its way through the middleware."""

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, max_body: int
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._request_id_header = (b"x-request-id", request_id.encode("latin-1"))
        self._max_body = max_body
        self._received = 0
        self.status = 500
        self.response_started = False
        # Once we answered in the app's place (body too large), what it still sends is dropped.
        self.answered_for_app = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.response_started = True
            message["headers"] = [*message.get("headers", ()), self._request_id_header]
        await self._send(message)

    async def send_from_app(self, message: Message) -> None:
        if not self.answered_for_app:
            await self.send(message)

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request" and not self.answered_for_app:
            self._received += len(message.get("body", b""))
            if self._received > self._max_body:
                self.answered_for_app = True
                await self.answer(self.too_large())
                return {"type": "http.disconnect"}
        return message

    def declared_too_large(self) -> bool:
        declared = _header(self.scope, b"content-length")
        return bool(declared and declared.isdigit() and int(declared) > self._max_body)

    def too_large(self) -> Problem:
        return Problem(
            413,
            "payload-too-large",
            "Request body too large",
            f"The body must not exceed {self._max_body} bytes.",
        )

    async def answer(self, problem: Problem) -> None:
        if not self.response_started:
            await problem.to_response()(self.scope, self._receive, self.send)


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = valid_request_id(_header(scope, b"x-request-id")) or new_request_id()
        traceparent = _header(scope, b"traceparent")
        active = tracing()
        span: trace.Span | None = None
        # Probes and scrapes make no traces of their own (one per second per prober).
        if active is None or (traceparent is None and scope["path"] in _QUIET_PATHS):
            parent = parse_traceparent(traceparent)
            trace_id, sampled = parent if parent else (new_trace_id(), True)
            context = RequestContext(request_id, trace_id, new_span_id(), sampled)
        else:
            # The server span: named for the route template once the router found it.
            span = active.tracer.start_span(
                f"{scope['method']} {scope['path']}",
                context=context_from_traceparent(traceparent),
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": scope["method"],
                    "url.path": scope["path"],
                    "http.request.id": request_id,
                },
            )
            ids = span.get_span_context()
            context = RequestContext(
                request_id,
                format(ids.trace_id, "032x"),
                format(ids.span_id, "016x"),
                ids.trace_flags.sampled,
            )
            otel_token = otel_context.attach(trace.set_span_in_context(span))
        token = set_context(context)
        exchange = _Exchange(scope, receive, send, request_id, self.max_body_bytes)
        started = time.perf_counter()
        self.metrics.started()
        try:
            if exchange.declared_too_large():
                await exchange.answer(exchange.too_large())
            else:
                await self.app(scope, exchange.receive, exchange.send_from_app)
        except Exception as exc:
            if not exchange.answered_for_app:  # else: it failed reading a body we cut off
                _log.error("unhandled exception", exc_info=exc, **{"url.path": scope["path"]})
                await exchange.answer(
                    Problem(500, "internal-error", "Internal server error", "The error was logged.")
                )
        finally:
            self._record(scope, exchange.status, time.perf_counter() - started)
            reset_context(token)
            if span is not None:
                _end_server_span(span, scope, exchange.status)
                otel_context.detach(otel_token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = _route_template(scope)
        self.metrics.finished(scope["method"], route, status, elapsed)
        if scope["path"] in _QUIET_PATHS and status < 400:
            return
        client = scope.get("client")
        _log.info(
            "request",
            **{
                "http.request.method": scope["method"],
                "url.path": scope["path"],
                "http.route": route,
                "http.response.status_code": status,
                "event.duration": int(elapsed * 1e9),
                "client.ip": client[0] if client else None,
            },
        )


def _end_server_span(span: trace.Span, scope: Scope, status: int) -> None:
    route = _route_template(scope)
    if route != _UNMATCHED:
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    span.end()
