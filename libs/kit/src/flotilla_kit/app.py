"""The FastAPI application factory every service uses.

It wires what every service has in common: problem+json errors, the observability
middleware, body size limit, `/livez`, `/readyz`, `/metrics`, and token verification.
The service adds its routers and readiness checks, its start-up (`lifespan`), and in a
`Background` what runs beside the requests (consumers, recovery loops, backlog watchers)
and what to close when it stops (the database, clients). `app_state` is the route
dependency that hands a route what the wiring put on `app.state`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from functools import partial
from typing import Any, TypeVar

import structlog
from fastapi import APIRouter, FastAPI, Request

from flotilla_kit.access_log import ServiceAccessLog
from flotilla_kit.health import Drain, ReadinessCheck, livez, readyz_endpoint
from flotilla_kit.metrics import HttpMetrics, metrics_endpoint
from flotilla_kit.middleware import ObservabilityMiddleware
from flotilla_kit.problems import PROBLEM_SCHEMA, install_problem_handlers, problem_response
from flotilla_kit.revocations import RevocationList
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.text import state_the_rule
from flotilla_kit.tls import client_context
from flotilla_kit.tokens import JwksCache, TokenVerifier

__all__ = [
    "PROBLEM_RESPONSES",
    "Background",
    "app_state",
    "create_service_app",
    "keeping_keys_fresh",
    "settle_the_heap",
    "token_verifier_for",
]

_T = TypeVar("_T")

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

# Documented on every route so the OpenAPI says what an error looks like.
PROBLEM_RESPONSES: dict[int | str, dict[str, object]] = {
    status: problem_response(description)
    for status, description in {
        400: "Malformed request",
        401: "Missing or invalid access token",
        403: "Not allowed",
        404: "Not found",
        413: "Body too large",
        415: "Wrong content type",
        422: "Validation failed",
    }.items()
}


_log = structlog.get_logger("flotilla.app")


class Background:
    """What a service runs beside its requests, and what it closes when it stops.

    `task` registers a loop (a consumer, a recovery loop, a backlog watcher): it starts
    once the service's start-up (its `lifespan`) is done; on shutdown every task is
    cancelled and awaited before the lifespan ends. A task that fails is logged at once
    (`background task failed`, with its name and traceback); the others go on.

    `closer` registers what to close (the database, a client, a server started during
    start-up; `enter` enters a context manager and registers its exit). Closers run after
    the tasks have stopped and the lifespan has ended, the last registered first; one that
    fails is logged (`closing failed`) and the next still runs. Register from the wiring or
    during start-up; a closer registered during start-up runs before those registered at
    build time, and only for that run.
    """

    def __init__(self) -> None:
        self._loops: list[tuple[str, Callable[[], Coroutine[Any, Any, object]]]] = []
        self._closers: list[Callable[[], Awaitable[object]]] = []
        self._running: list[asyncio.Task[object]] = []

    def task(self, run: Callable[[], Coroutine[Any, Any, object]], *, name: str) -> None:
        self._loops.append((name, run))

    def closer(self, close: Callable[[], Awaitable[object]]) -> None:
        self._closers.append(close)

    async def enter(self, context: AbstractAsyncContextManager[_T]) -> _T:
        """During start-up: enter `context` now, exit it as a closer."""
        entered = await context.__aenter__()
        self.closer(partial(context.__aexit__, None, None, None))
        return entered

    @property
    def tasks(self) -> tuple[asyncio.Task[object], ...]:
        """The tasks running now (empty before start-up and after shutdown)."""
        return tuple(self._running)

    def _start(self) -> None:
        for name, run in self._loops:
            task = asyncio.create_task(run(), name=name)
            task.add_done_callback(_log_failure)
            self._running.append(task)

    async def _stop(self) -> None:
        running, self._running = self._running, []
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _close(self, keep: int) -> None:
        # Those registered during this start-up belong to this run; the wiring's stay for
        # the next (a test may start the same app again).
        closers, self._closers = self._closers, self._closers[:keep]
        for close in reversed(closers):
            try:
                await close()
            except Exception as error:  # the next closer must still run
                _log.error("closing failed", closer=repr(close), exc_info=error)

    @asynccontextmanager
    async def _around(
        self, lifespan: AbstractAsyncContextManager[None] | None
    ) -> AsyncIterator[None]:
        keep = len(self._closers)
        try:
            async with lifespan if lifespan is not None else nullcontext():
                self._start()
                try:
                    yield
                finally:
                    await self._stop()
        finally:
            await self._close(keep)


def _log_failure(task: asyncio.Task[object]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        _log.error("background task failed", task=task.get_name(), exc_info=error)


def app_state(name: str) -> Callable[[Request], Coroutine[Any, Any, Any]]:
    """A route dependency returning `app.state.<name>`, for `Annotated[T, Depends(...)]`.
    A coroutine function: FastAPI runs a plain `def` dependency in its thread pool, a
    thread hop per request for an attribute lookup."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = dependency.__qualname__ = f"app_state_{name}"
    return dependency


def token_verifier_for(settings: ServiceSettings) -> TokenVerifier:
    tls = settings.tls
    ssl_context = client_context(tls.ca_file, tls.cert_file, tls.key_file) if tls.ca_file else None
    jwks = JwksCache(settings.jwks_urls, ssl_context=ssl_context)
    revocations = RevocationList(
        settings.revocation_urls, ssl_context=ssl_context, refresh_s=settings.revocation_refresh_s
    )
    return TokenVerifier(
        jwks,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        revocations=revocations,
    )


@asynccontextmanager
async def keeping_keys_fresh(verifier: TokenVerifier) -> AsyncIterator[None]:
    """Fetch keys and revocations at start, then keep refreshing them in the background."""
    await verifier.jwks.refresh()
    await verifier.revocations.refresh()
    tasks = [
        asyncio.create_task(verifier.jwks.run()),
        asyncio.create_task(verifier.revocations.run()),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def settle_the_heap() -> None:
    """Once everything the process keeps is loaded: move it out of the garbage collector's
    sight (`gc.freeze`). A service holds some 150,000 objects after start (its modules,
    FastAPI's and SQLAlchemy's structures); a full collection walked all of them, 100 ms
    each time on this machine, for objects that live as long as the process."""
    gc.collect()
    gc.freeze()


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter],
    readiness: Mapping[str, ReadinessCheck],
    lifespan: Lifespan | None = None,
    verifier: TokenVerifier | None = None,
    background: Background | None = None,
) -> FastAPI:
    """The app of a service. On start: the token keys are fetched, then `lifespan` starts
    (migrations, servers), then the `background` tasks; on stop, the reverse: tasks, the
    lifespan's end, the background's closers, the key refreshers."""
    metrics = HttpMetrics(settings.service_name)
    access_log = ServiceAccessLog(
        service=settings.service_name,
        node=f"{settings.service_name}-{settings.instance_id}",
        enabled=settings.log_level in ("debug", "info"),
    )

    token_verifier = verifier or token_verifier_for(settings)
    beside = background or Background()

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with (
                keeping_keys_fresh(token_verifier),
                beside._around(None if lifespan is None else lifespan(app)),
            ):
                settle_the_heap()
                yield
        finally:
            access_log.flush()

    app = FastAPI(
        title=title,
        version="1.0.0",
        lifespan=run,
        # A service sits behind the gateway: `/products/` is not `/products`, and a 307 to
        # the other path only led a client to a 405 its operation does not document.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.access_log = access_log
    app.state.token_verifier = token_verifier
    app.state.background = beside
    # Started by `flotilla_kit.server.serve` on SIGTERM.
    app.state.drain = drain = Drain()
    install_problem_handlers(app)
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        access_log=access_log,
    )
    for router in routers:
        app.include_router(router)
    app.add_route("/livez", livez, include_in_schema=False)
    app.add_route("/readyz", readyz_endpoint(readiness, drain), include_in_schema=False)
    app.add_route("/metrics", metrics_endpoint(metrics), include_in_schema=False)  # type: ignore[arg-type]

    default_openapi = app.openapi

    def openapi() -> dict[str, object]:
        schema = default_openapi()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        # Any route may answer 422: the kit's middleware refuses a path or a query that
        # holds text the rule refuses (flotilla_kit.text) before a route is chosen.
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.setdefault("responses", {}).setdefault("422", PROBLEM_RESPONSES[422])
                for parameter in operation.get("parameters", ()):
                    if parameter.get("in") in ("path", "query"):
                        state_the_rule(parameter.get("schema", {}))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
