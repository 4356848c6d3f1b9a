"""Request content-type checks: a JSON endpoint answers 415, not a confusing 422, when it is
sent a form or plain text."""

from __future__ import annotations

from fastapi import Request

from flotilla_kit.problems import Problem

__all__ = ["require_form", "require_json"]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _unsupported(expected: str) -> Problem:
    return Problem(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        f"Send the body as {expected}.",
        headers={"Accept-Post": expected},
    )


async def require_json(request: Request) -> None:
    media_type = _media_type(request)
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise _unsupported("application/json")


async def require_form(request: Request) -> None:
    if _media_type(request) != "application/x-www-form-urlencoded":
        raise _unsupported("application/x-www-form-urlencoded")
