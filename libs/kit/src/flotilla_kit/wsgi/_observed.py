"""The WSGI counterpart of `flotilla_kit.middleware.ObservabilityMiddleware`: request
context, declared body size, the kit's text rule for the path and the query, RED metrics,
access log, trace span, `X-Request-ID` on every answer and the last-resort 500."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from flotilla_kit.context import (
    new_request_id,
    valid_request_id,
)
from flotilla_kit.logs import get_logger
from flotilla_kit.middleware import QUIET_PATHS, UNMATCHED, RequestTrace, refused_target
from flotilla_kit.problems import PROBLEM_CONTENT_TYPE, Problem, problem_body

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from flotilla_kit.wsgi._chassis import Chassis

__all__ = ["ROUTE_KEY", "BodyTooLarge", "ObservedWsgi", "problem_bytes", "too_large"]

# Where the framework's side leaves the route template of the request (`{name}`
# placeholders), for the metrics, the access line and the span.
ROUTE_KEY = "flotilla.route"
_log = get_logger("flotilla.access")


class BodyTooLarge(Exception):
    """Raised by `wsgi.input` when a body sent without `Content-Length` (chunked) grows
    past `max_body_bytes`: each framework's adapter answers it as `too_large(...)`."""


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


def _declared_too_large(environ: WSGIEnvironment, limit: int) -> bool:
    declared = environ.get("CONTENT_LENGTH") or ""
    return declared.isdigit() and int(declared) > limit


class _CappedBody:
    """`wsgi.input` of a body sent without `Content-Length` (chunked): reading past
    `limit` bytes raises `BodyTooLarge`, which the adapter answers as the kit's 413."""

    _CHUNK = 65_536

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._read = 0

    def _counted(self, data: bytes) -> bytes:
        self._read += len(data)
        if self._read > self._limit:
            raise BodyTooLarge()
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


class ObservedWsgi:
    """Wraps the framework's WSGI app (Flask's `wsgi_app`, Django's handler). The answer
    is collected before it is returned (a kit service answers JSON documents, not
    streams), so the request's context, metrics and span cover all of it."""

    def __init__(self, app: WSGIApplication, chassis: Chassis) -> None:
        self.app = app
        self.chassis = chassis

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        chassis = self.chassis
        if not chassis.started:  # served without `serve_wsgi` (a framework's test client)
            chassis.start()
        method: str = environ["REQUEST_METHOD"]
        path: str = environ.get("PATH_INFO", "")
        request_id = valid_request_id(environ.get("HTTP_X_REQUEST_ID")) or new_request_id()
        traced = RequestTrace(method, path, request_id, environ.get("HTTP_TRACEPARENT"))
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
        except Exception as exc:  # the framework answers its own errors; this is the last resort
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
            if not (path in QUIET_PATHS and status < 400):
                context = traced.context
                chassis.record_access(
                    method=method, path=path, route=route, status=status,
                    duration_ns=elapsed_ns, request_id=request_id,
                    trace_id=context.trace_id, span_id=context.span_id,
                    client_ip=environ.get("REMOTE_ADDR"),
                )  # fmt: skip
            traced.end(route, status, ended_ns)

    def _refused(self, environ: WSGIEnvironment, path: str) -> Problem | None:
        """Refused before the framework sees it: a body declared too large, a refused path
        or query."""
        limit = self.chassis.settings.max_body_bytes
        if _declared_too_large(environ, limit):
            return too_large(limit)
        if not environ.get("CONTENT_LENGTH") and "wsgi.input" in environ:
            environ["wsgi.input"] = _CappedBody(environ["wsgi.input"], limit)
        return refused_target(path, environ.get("QUERY_STRING", ""))
