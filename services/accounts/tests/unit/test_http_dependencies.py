"""FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request: every
dependency of the accounts API is a coroutine function (none does blocking I/O)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from flotilla_accounts.entrypoints.http import router


def _calls(dependant: Dependant) -> Iterator[object]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def test_every_dependency_runs_on_the_event_loop() -> None:
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    calls = {call for route in routes for call in _calls(route.dependant)}
    names = {getattr(call, "__qualname__", "") for call in calls}
    assert {
        "app_state_database",
        "_shard",
        "_shards",
        "current_principal",
    } <= names  # the walk works
    threaded = sorted(
        getattr(call, "__qualname__", repr(call))
        for call in calls
        if not inspect.iscoroutinefunction(call)
    )
    assert threaded == []
