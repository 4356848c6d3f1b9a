"""The WSGI counterpart of `flotilla_kit.middleware.ObservabilityMiddleware`: request
context, declared body size, the kit's text rule for the path and the query, RED metrics,
access log, trace span, `X-Request-ID` on every answer and the last-resort 500."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from werkzeug.exceptions import RequestEntityTooLarge

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
from flotilla_kit.problems import PROBLEM_CONTENT_TYPE, Problem, problem_body, refused_text
from flotilla_kit.text import refusal
from flotilla_kit.tracing import context_from_traceparent, tracing, unsampled_parent

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from flotilla_kit.flask._chassis import FlaskChassis

__all__ = ["ROUTE_KEY", "UNMATCHED", "ObservedWsgi", "problem_bytes", "too_large"]

# Where the Flask side leaves the route template of the request (`{name}` placeholders).
ROUTE_KEY = "flotilla.route"
UNMATCHED = "<unmatched>"
_QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
_log = get_logger("flotilla.access")


def too_large(max_body_bytes: int) -> Problem:
    return Problem(
        413,
        "payload-too-large",
        "Request body too large",
        f"The body must not exceed {max_body_bytes} bytes.",
    )


def problem_bytes(problem: Problem, instance: str | None) -> bytes:
    body = problem_body(
        problem.status, problem.slug, problem.title, problem.detail, instance,
        **problem.extensions,
    )  # fmt: skip
    return json.dumps(body, separators=(",", ":")).encode()


def _refused_target(path: str, query: str) -> Problem | None:
    problem = refusal(path)
    if problem is not None:
        return refused_text(["path"], problem)
    if not query or ("%" not in query and refusal(query) is None):
        return None
    for name, value in parse_qsl(query, keep_blank_values=True):
        problem = refusal(name) or refusal(value)
        if problem is not None:
            return refused_text(["query", name], problem)
    return None


def _declared_too_large(environ: WSGIEnvironment, limit: int) -> bool:
    declared = environ.get("CONTENT_LENGTH") or ""
    return declared.isdigit() and int(declared) > limit


class _CappedBody:
    """`wsgi.input` of a body sent without `Content-Length` (chunked): reading past
    `limit` bytes raises werkzeug's 413, which the app answers as the kit's problem."""

    _CHUNK = 65_536

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._read = 0

    def _counted(self, data: bytes) -> bytes:
        self._read += len(data)
        if self._read > self._limit:
            raise RequestEntityTooLarge()
        return data

    def read(self, size: int = -1) -> bytes:
        if size is not None and size >= 0:
            return self._counted(self._inner.read(size))
        chunks = []
        while chunk := self._counted(self._inner.read(self._CHUNK)):
            chunks.append(chunk)
        return b"".join(chunks)

    def readline(self, size: int = -1) -> bytes:
        return self._counted(self._inner.readline(size))

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class _Traced:
    """The request's context, and its span when it is recorded (as the ASGI middleware)."""

    def __init__(self, method: str, path: str, request_id: str, traceparent: str | None) -> None:
        self.method, self.path, self.request_id = method, path, request_id
        self.active = active = tracing()
        self.span: trace.Span | None = None
        self.unsampled: tuple[str, str] | None = None
        self.otel_token: object = None
        self.started_ns = time.time_ns()
        if active is None or (traceparent is None and path in _QUIET_PATHS):
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
        reset_context(self.token)
        method, path, span = self.method, self.path, self.span
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
                    "http.request.method": method, "url.path": path, "http.route": route,
                    "http.response.status_code": status, "http.request.id": self.request_id,
                },
            )  # fmt: skip


class ObservedWsgi:
    """Wraps the Flask app's `wsgi_app`. The answer is collected before it is returned
    (a kit service answers JSON documents, not streams), so the request's context,
    metrics and span cover all of it."""

    def __init__(self, app: WSGIApplication, chassis: FlaskChassis) -> None:
        self.app = app
        self.chassis = chassis

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        chassis = self.chassis
        if not chassis.loop.running:  # served without `serve_wsgi` (Flask's test client)
            chassis.start()
        method: str = environ["REQUEST_METHOD"]
        path: str = environ.get("PATH_INFO", "")
        request_id = valid_request_id(environ.get("HTTP_X_REQUEST_ID")) or new_request_id()
        traced = _Traced(method, path, request_id, environ.get("HTTP_TRACEPARENT"))
        status = 500
        id_header = ("X-Request-ID", request_id)

        def start(
            status_line: str, headers: list[tuple[str, str]], exc_info: object = None
        ) -> object:
            nonlocal status
            status = int(status_line[:3])
            headers.append(id_header)
            return start_response(status_line, headers, exc_info)  # type: ignore[arg-type]

        def answer(problem: Problem, exc_info: object = None) -> list[bytes]:
            body = problem_bytes(problem, path)
            headers = [
                ("Content-Type", PROBLEM_CONTENT_TYPE),
                ("Content-Length", str(len(body))),
                *problem.headers.items(),
            ]
            start(f"{problem.status} {problem.title}", headers, exc_info)
            return [body]

        chassis.metrics.started()
        try:
            refused = self._refused(environ, path)
            if refused is not None:
                return answer(refused)
            result = self.app(environ, start)  # type: ignore[arg-type]
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception as exc:  # Flask answers its own errors; this is the last resort
            _log.error("unhandled exception", exc_info=exc, **{"url.path": path})
            failed = Problem(
                500, "internal-error", "Internal server error", "The error was logged."
            )
            return answer(failed, sys.exc_info())
        finally:
            ended_ns = time.time_ns()
            route: str = environ.get(ROUTE_KEY, UNMATCHED)
            elapsed_ns = ended_ns - traced.started_ns
            chassis.metrics.finished(method, route, status, elapsed_ns / 1e9)
            if not (path in _QUIET_PATHS and status < 400):
                context = traced.context
                chassis.record_access(
                    method=method, path=path, route=route, status=status,
                    duration_ns=elapsed_ns, request_id=request_id,
                    trace_id=context.trace_id, span_id=context.span_id,
                    client_ip=environ.get("REMOTE_ADDR"),
                )  # fmt: skip
            traced.end(route, status, ended_ns)

    def _refused(self, environ: WSGIEnvironment, path: str) -> Problem | None:
        """Refused before Flask sees it: a body declared too large, a refused path or query."""
        limit = self.chassis.settings.max_body_bytes
        if _declared_too_large(environ, limit):
            return too_large(limit)
        if not environ.get("CONTENT_LENGTH") and "wsgi.input" in environ:
            environ["wsgi.input"] = _CappedBody(environ["wsgi.input"], limit)
        return _refused_target(path, environ.get("QUERY_STRING", ""))
