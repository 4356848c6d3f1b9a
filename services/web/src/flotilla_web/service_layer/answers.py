"""Reading the APIs' answers: ids made safe for a path, answers that must be a success."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flotilla_kit.text import refusal
from flotilla_web.domain import ApiFailed, NotFound
from flotilla_web.service_layer.ports import ApiAnswer

__all__ = ["MAX_ID", "expect_ok", "items_of", "path_id"]

MAX_ID = 128


def path_id(value: str) -> str:
    """An id from a page's URL, as one path segment of an API call: NotFound for what no
    id looks like (so it cannot reach the API as more than one segment)."""
    if not value or len(value) > MAX_ID or refusal(value) is not None:
        raise NotFound
    return quote(value, safe="")


def expect_ok(answer: ApiAnswer, what: str) -> Any:
    """The body of a 2xx answer; NotFound for a 404; ApiFailed for anything else."""
    if answer.ok:
        return answer.body
    if answer.status == 404:
        raise NotFound
    raise ApiFailed(answer.status, f"{what}: {answer.detail or 'no detail'}")


def items_of(body: Any) -> list[dict[str, Any]]:
    """The `items` of a page of a list (an API's usual shape)."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ApiFailed(502, "the API answered a list without items")
    return [item for item in items if isinstance(item, dict)]
