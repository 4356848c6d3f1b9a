"""What the HTTP modules share: the components dependency and problem documentation."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from flotilla_auth.service_layer.components import Components
from flotilla_kit.problems import PROBLEM_CONTENT_TYPE

__all__ = ["ComponentsDep", "problem_response"]


# `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on
# every request for what is an attribute lookup.
async def _components(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


ComponentsDep = Annotated[Components, Depends(_components)]


def problem_response(description: str) -> dict[str, object]:
    """An OpenAPI response entry for a problem+json answer."""
    return {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
