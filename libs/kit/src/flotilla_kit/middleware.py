"""The one ASGI middleware every service runs: request context, body size limit, RED
metrics, access log, trace span, and the last-resort 500.

Plain ASGI rather than `BaseHTTPMiddleware`: it adds one function call per request and does
not buffer bodies. It sits outside FastAPI's own error handling, which is why the body
limit and the 500 are answered here: this is the last place that still knows the request id.

Each part costs a few microseconds on the request path: the access line is a tuple,
rendered in batches (`ServiceAccessLog`); the metrics are children looked up once per
route and status; a request whose caller did not sample its trace (`traceparent` flag 00,
what the gateway sends for most requests) makes no span at all, only the ids it passes on,
and gets a span after all when it fails (5xx): errors are always kept.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flotilla_kit.access_log import ServiceAccessLog
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
from flotilla_kit.problems import Problem, refused_text
from flotilla_kit.text import refusal
from flotilla_kit.tracing import context_from_traceparent, tracing, unsampled_parent

__all__ = [
    "QUIET_PATHS",
    "UNMATCHED",
    "ObservabilityMiddleware",
    "RequestTrace",
    "refused_target",
]

# The route label of a request no route matched.
UNMATCHED = "<unmatched>"
# Probes and scrapes run every second; logging each would drown the requests that matter.
QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
_log = get_logger("flotilla.access")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def refused_target(path: str, query: str) -> Problem | None:
    """422 when the path or a query parameter holds text the kit's rule refuses (a NUL,
    another control character, a line break: none has a use in a URL)."""
    problem = refusal(path)
    if problem is not None:
        return refused_text(["path"], problem)
    if not query or ("%" not in query and refusal(query) is None):
        return None  # nothing encoded, nothing refused: the common case
    for name, value in parse_qsl(query, keep_blank_values=True):
        problem = refusal(name) or refusal(value)
        if problem is not None:
            return refused_text(["query", name], problem)
    return None


def _query(scope: Scope) -> str:
    raw: bytes = scope.get("query_string", b"")
    return raw.decode("latin-1") if raw else ""


def _ids_sent(scope: Scope) -> tuple[str | None, str | None]:
    """The caller's `x-request-id` and `traceparent`, in one pass over the headers."""
    request_id = traceparent = None
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            request_id = value.decode("latin-1")
        elif key == b"traceparent":
            traceparent = value.decode("latin-1")
    return request_id, traceparent


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


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
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: HttpMetrics,
        max_body_bytes: int,
        access_log: ServiceAccessLog,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        sent_id, traceparent = _ids_sent(scope)
        request_id = valid_request_id(sent_id) or new_request_id()
        traced = RequestTrace(scope["method"], scope["path"], request_id, traceparent)
        exchange = _Exchange(scope, receive, send, request_id, self.max_body_bytes)
        self.metrics.started()
        try:
            if exchange.declared_too_large():
                await exchange.answer(exchange.too_large())
            elif (refused := refused_target(scope["path"], _query(scope))) is not None:
                await exchange.answer(refused)
            else:
                await self.app(scope, exchange.receive, exchange.send_from_app)
        except Exception as exc:
            if not exchange.answered_for_app:  # else: it failed reading a body we cut off
                _log.error("unhandled exception", exc_info=exc, **{"url.path": scope["path"]})
                await exchange.answer(
                    Problem(500, "internal-error", "Internal server error", "The error was logged.")
                )
        finally:
            ended_ns = time.time_ns()
            status = exchange.status
            route = _route_template(scope)
            self._record(scope, route, status, ended_ns - traced.started_ns, traced.context)
            traced.end(route, status, ended_ns)

    def _record(
        self, scope: Scope, route: str, status: int, elapsed_ns: int, context: RequestContext
    ) -> None:
        self.metrics.finished(scope["method"], route, status, elapsed_ns / 1e9)
        if scope["path"] in QUIET_PATHS and status < 400:
            return
        client = scope.get("client")
        self.access_log.record(
            method=scope["method"],
            path=scope["path"],
            route=route,
            status=status,
            duration_ns=elapsed_ns,
            request_id=context.request_id,
            trace_id=context.trace_id,
            span_id=context.span_id,
            client_ip=client[0] if client else None,
        )


class RequestTrace:
    """A server request's context and, when it is recorded, its span: the one place the
    ASGI middleware and the Flask chassis decide them.

    The request context (`flotilla_kit.context`) is set from the start. Probes and scrapes
    without a caller's trace make no span (one per second per prober); a caller's unsampled
    `traceparent` is carried on (flag 00), and the request gets an error span only if it
    ends in a 5xx; otherwise a server span, parented by the caller's, named for the route
    template at the end.
    """

    __slots__ = (
        "active", "context", "method", "otel_token", "path", "request_id", "span",
        "started_ns", "token", "unsampled",
    )  # fmt: skip

    def __init__(self, method: str, path: str, request_id: str, traceparent: str | None) -> None:
        self.method, self.path, self.request_id = method, path, request_id
        self.active = active = tracing()
        self.span: trace.Span | None = None
        self.unsampled: tuple[str, str] | None = None
        self.otel_token: object = None
        self.started_ns = time.time_ns()
        if active is None or (traceparent is None and path in QUIET_PATHS):
            parent = parse_traceparent(traceparent)
            trace_id, sampled = parent if parent else (new_trace_id(), True)
            self.context = RequestContext(request_id, trace_id, new_span_id(), sampled)
        elif (unsampled := unsampled_parent(traceparent)) is not None:
            self.unsampled = unsampled
            self.context = RequestContext(request_id, unsampled[0], new_span_id(), False)
        else:
            span = self.span = active.tracer.start_span(
                f"{method} {path}",
                context=context_from_traceparent(traceparent),
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": method, "url.path": path,
                    "http.request.id": request_id,
                },
            )  # fmt: skip
            ids = span.get_span_context()
            self.context = RequestContext(
                request_id,
                format(ids.trace_id, "032x"),
                format(ids.span_id, "016x"),
                ids.trace_flags.sampled,
            )
            self.otel_token = otel_context.attach(trace.set_span_in_context(span))
        self.token = set_context(self.context)

    def end(self, route: str, status: int, ended_ns: int) -> None:
        """The request is answered (`route`: its template, or `UNMATCHED`)."""
        reset_context(self.token)
        method, span = self.method, self.span
        if span is not None:
            if route != UNMATCHED:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            otel_context.detach(self.otel_token)  # type: ignore[arg-type]
        elif self.unsampled is not None and status >= 500 and self.active is not None:
            self.active.error_span(
                name=f"{method} {route}", kind=SpanKind.SERVER, context=self.context,
                parent_span_id=self.unsampled[1], start_ns=self.started_ns, end_ns=ended_ns,
                attributes={
                    "http.request.method": method, "url.path": self.path, "http.route": route,
                    "http.response.status_code": status, "http.request.id": self.request_id,
                },
            )  # fmt: skip
