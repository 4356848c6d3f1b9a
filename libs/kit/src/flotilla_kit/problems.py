"""RFC 9457 problem details: the only shape an error leaves a Flotilla service in.

Services raise `Problem` (or a subclass from their own exception tree mapped to one);
`install_problem_handlers` turns it, validation errors, unknown routes and unexpected
exceptions into `application/problem+json`. A stack trace never reaches the client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from flotilla_kit.context import current_request_id
from flotilla_kit.db import TextNotStorable
from flotilla_kit.text import TextRefused

__all__ = [
    "PROBLEM_BASE",
    "PROBLEM_CONTENT_TYPE",
    "Problem",
    "install_problem_handlers",
    "problem_body",
    "problem_type",
    "refused_text",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://flotilla.dev/problems/"

_log = structlog.get_logger("flotilla.problems")

# Titles for the statuses Starlette raises by itself (unknown route, wrong method, ...).
_GENERIC: dict[int, tuple[str, str]] = {
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
    slug, title = _GENERIC.get(exc.status_code, ("http-error", "HTTP error"))
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
