"""FastAPI runs a plain `def` dependency in its thread pool: a thread hop on every
request. Every dependency of the orders API is a coroutine function instead."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from flotilla_orders.entrypoints import http


def dependencies_of(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from dependencies_of(sub)


def test_no_dependency_of_the_api_runs_in_the_thread_pool() -> None:
    routes = [*http.router.routes, *http.history_router.routes]
    assert routes
    for route in routes:
        assert isinstance(route, APIRoute)
        calls = list(dependencies_of(route.dependant))
        assert calls, route.path
        blocking = [c for c in calls if not inspect.iscoroutinefunction(c)]
        assert blocking == [], f"{route.path}: {blocking}"
