"""RFC 9457 problem details: the only shape an error leaves a Flotilla service in.

Services raise `Problem` (or a subclass from their own exception tree mapped to one);
`install_problem_handlers` turns it, validation errors, unknown routes and unexpected
exceptions into `application/problem+json`. A stack trace never reaches the client.

A service maps its own exception tree with a `ProblemTable`: error type -> (status, slug,
title), or a `ProblemRule` where the answer needs more (extension members, headers, a
fixed detail); the most specific class an error belongs to wins. `problem_response`
documents a problem answer in the OpenAPI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from flotilla_kit.context import current_request_id
from flotilla_kit.db import TextNotStorable
from flotilla_kit.text import TextRefused

__all__ = [
    "GENERIC_PROBLEMS",
    "PROBLEM_BASE",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_SCHEMA",
    "Problem",
    "ProblemRule",
    "ProblemTable",
    "install_problem_handlers",
    "problem_body",
    "problem_response",
    "problem_type",
    "refused_text",
]

# The JSON schema of a problem, as every service documents it (FastAPI's and the WSGI
# chassis's OpenAPI documents share it, so the gateway's merge keeps one copy).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "additionalProperties": True,
}

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://flotilla.dev/problems/"

_log = structlog.get_logger("flotilla.problems")

# Titles for the statuses a framework raises by itself (unknown route, wrong method, ...),
# for the FastAPI and the Flask chassis alike.
GENERIC_PROBLEMS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Request validation failed"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


def problem_type(slug: str) -> str:
    return PROBLEM_BASE + slug


class Problem(Exception):
    """An error with an HTTP status and a stable problem type slug."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions

    def to_response(self, instance: str | None = None) -> Response:
        body = problem_body(
            self.status, self.slug, self.title, self.detail, instance, **self.extensions
        )
        return Response(
            json.dumps(body, separators=(",", ":")).encode(),
            status_code=self.status,
            media_type=PROBLEM_CONTENT_TYPE,
            headers=self.headers,
        )


def problem_body(
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    instance: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": problem_type(slug), "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    body.update(extensions)
    return body


def problem_response(description: str) -> dict[str, object]:
    """An OpenAPI response entry (for a route's `responses`) saying the answer is a problem."""
    return {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


_E = TypeVar("_E", bound=BaseException)
_T = TypeVar("_T")


def _of(value: _T | Callable[[_E], _T], exc: _E) -> _T:
    if callable(value):
        return value(exc)
    return value


# No `slots`: `ProblemRule[SomeError](...)` (which types the functions' argument) sets
# `__orig_class__` on the instance.
@dataclass(frozen=True)
class ProblemRule(Generic[_E]):
    """How errors of one type become a problem. Each member is a value or a function of
    the error; `detail` is the error's message (`str(exc)`) unless given."""

    status: int | Callable[[_E], int]
    slug: str | Callable[[_E], str]
    title: str | Callable[[_E], str]
    detail: str | Callable[[_E], str] | None = None
    headers: Mapping[str, str] | Callable[[_E], Mapping[str, str]] | None = None
    extensions: Callable[[_E], Mapping[str, Any]] | None = None

    def problem(self, exc: _E) -> Problem:
        detail = str(exc) if self.detail is None else _of(self.detail, exc)
        return Problem(
            _of(self.status, exc),
            _of(self.slug, exc),
            _of(self.title, exc),
            detail,
            headers=None if self.headers is None else _of(self.headers, exc),
            **({} if self.extensions is None else self.extensions(exc)),
        )


# (status, slug, title): the detail is the error's message.
ProblemEntry = tuple[int, str, str] | ProblemRule[Any]

_BAD_REQUEST: ProblemEntry = (400, "bad-request", "Bad request")


def _rule(entry: ProblemEntry) -> ProblemRule[Any]:
    return entry if isinstance(entry, ProblemRule) else ProblemRule(*entry)


class ProblemTable:
    """A service's exception tree mapped to problems, declared as data.

    An error is answered by the entry of the most specific class it belongs to (its MRO
    is walked, so a subclass without an entry takes its nearest ancestor's); an error the
    table names no class of gets `default` (400 `bad-request` with the error's message).
    """

    def __init__(
        self,
        entries: Mapping[type[BaseException], ProblemEntry],
        *,
        default: ProblemEntry = _BAD_REQUEST,
    ) -> None:
        self._rules = {kind: _rule(entry) for kind, entry in entries.items()}
        self._default = _rule(default)

    def problem_for(self, exc: BaseException) -> Problem:
        for kind in type(exc).__mro__:
            rule = self._rules.get(kind)
            if rule is not None:
                return rule.problem(exc)
        return self._default.problem(exc)

    def install(self, app: FastAPI, *errors: type[Exception]) -> None:
        """Answer every error of the given types (the roots of the service's tree) with
        its problem."""

        async def handle(request: Request, exc: Exception) -> Response:
            return self.problem_for(exc).to_response(instance=request.url.path)

        for error in errors:
            app.add_exception_handler(error, handle)


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Keep what helps a client fix the request; drop echoed input and pydantic URLs."""
    cleaned: list[dict[str, Any]] = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        cleaned.append(
            {"location": location, "message": error.get("msg", ""), "code": error.get("type")}
        )
    return cleaned


def refused_text(location: Sequence[str], reason: str) -> Problem:
    """422 for text the kit's rule refuses (`flotilla_kit.text`), naming where it was."""
    where = ".".join(location)
    return Problem(
        422,
        "validation-error",
        "Request validation failed",
        f"{where} {reason}.",
        errors=[{"location": list(location), "message": f"the value {reason}", "code": "text"}],
    )


async def _on_text_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TextRefused)
    return refused_text(exc.field.split("."), exc.reason).to_response(instance=request.url.path)


async def _on_text_not_storable(request: Request, exc: Exception) -> Response:
    # The last line: an entrypoint let such text through to the database. Nothing was
    # written (the transaction rolled back with the error).
    _log.warning("text the database cannot store reached it", path=request.url.path)
    return Problem(
        422,
        "validation-error",
        "Request validation failed",
        "The request holds a character no field accepts (a NUL or a lone surrogate).",
    ).to_response(instance=request.url.path)


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.to_response(instance=request.url.path)


_IDEMPOTENCY_KEY = ("header", "Idempotency-Key")


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in errors):
        return Problem(
            400, "malformed-json", "Malformed JSON", "The request body is not valid JSON."
        ).to_response(instance=request.url.path)
    if any(
        error.get("type") == "missing" and tuple(error.get("loc", ())) == _IDEMPOTENCY_KEY
        for error in errors
    ):
        return Problem(
            400,
            "idempotency-key-required",
            "Idempotency-Key required",
            "Send an Idempotency-Key header (a unique string per intended change); repeat "
            "the request with the same key to learn what became of it.",
        ).to_response(instance=request.url.path)
    return Problem(
        422,
        "validation-error",
        "Request validation failed",
        "One or more fields are missing or invalid.",
        errors=_validation_errors(errors),
    ).to_response(instance=request.url.path)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    slug, title = GENERIC_PROBLEMS.get(exc.status_code, ("http-error", "HTTP error"))
    same = isinstance(exc.detail, str) and exc.detail.lower() == title.lower()
    detail = exc.detail if isinstance(exc.detail, str) and not same else None
    headers = dict(exc.headers or {})
    return Problem(exc.status_code, slug, title, detail, headers=headers).to_response(
        instance=request.url.path
    )


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log (with the request id), never to the client.
    _log.error("unhandled exception", exc_info=exc, path=request.url.path)
    return Problem(
        500, "internal-error", "Internal server error", "The error was logged."
    ).to_response(instance=request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(TextRefused, _on_text_refused)
    app.add_exception_handler(TextNotStorable, _on_text_not_storable)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)
