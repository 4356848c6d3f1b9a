"""The FastAPI application factory every service uses.

It wires what every service has in common: problem+json errors, the observability
middleware, body size limit, `/livez`, `/readyz`, `/metrics`, and token verification.
The service adds its routers and readiness checks.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import APIRouter, FastAPI

from flotilla_kit.access_log import ServiceAccessLog
from flotilla_kit.health import Drain, ReadinessCheck, livez, readyz_endpoint
from flotilla_kit.metrics import HttpMetrics, metrics_endpoint
from flotilla_kit.middleware import ObservabilityMiddleware
from flotilla_kit.problems import PROBLEM_CONTENT_TYPE, install_problem_handlers
from flotilla_kit.revocations import RevocationList
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.text import state_the_rule
from flotilla_kit.tls import client_context
from flotilla_kit.tokens import JwksCache, TokenVerifier

__all__ = [
    "PROBLEM_RESPONSES",
    "create_service_app",
    "keeping_keys_fresh",
    "settle_the_heap",
    "token_verifier_for",
]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

# Documented on every route so the OpenAPI says what an error looks like.
PROBLEM_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
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

_PROBLEM_SCHEMA = {
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
) -> FastAPI:
    metrics = HttpMetrics(settings.service_name)
    access_log = ServiceAccessLog(
        service=settings.service_name,
        node=f"{settings.service_name}-{settings.instance_id}",
        enabled=settings.log_level in ("debug", "info"),
    )

    token_verifier = verifier or token_verifier_for(settings)

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with keeping_keys_fresh(token_verifier):
                if lifespan is None:
                    settle_the_heap()
                    yield
                    return
                async with lifespan(app):
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
        components.setdefault("schemas", {})["Problem"] = _PROBLEM_SCHEMA
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
