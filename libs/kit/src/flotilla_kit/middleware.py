"""The one ASGI middleware every service runs: request context, body size limit, RED
metrics, access log.

Plain ASGI rather than `BaseHTTPMiddleware`: it adds one function call per request and does
not buffer bodies.
"""

from __future__ import annotations

import time

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

__all__ = ["ObservabilityMiddleware"]

_UNMATCHED = "<unmatched>"
# Probes and scrapes run every second; logging each would drown the requests that matter.
_QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else _UNMATCHED


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.log = get_logger("flotilla.access")

    def _too_large(self) -> Problem:
        return Problem(
            413,
            "payload-too-large",
            "Request body too large",
            f"The body must not exceed {self.max_body_bytes} bytes.",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = valid_request_id(_header(scope, b"x-request-id")) or new_request_id()
        parent = parse_traceparent(_header(scope, b"traceparent"))
        trace_id, sampled = parent if parent else (new_trace_id(), True)
        ctx = RequestContext(request_id, trace_id, new_span_id(), sampled)
        token = set_context(ctx)
        status = 500
        request_id_header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Raised inside the endpoint, so the problem handlers render it.
                    raise self._too_large()
            return message

        started = time.perf_counter()
        self.metrics.started()
        try:
            declared = _header(scope, b"content-length")
            if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
                await self._too_large().to_response()(scope, receive, send_with_request_id)
            else:
                await self.app(scope, receive_within_limit, send_with_request_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            self.metrics.finished(scope["method"], route, status, elapsed)
            if scope["path"] not in _QUIET_PATHS or status >= 400:
                client = scope.get("client")
                self.log.info(
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
            reset_context(token)
