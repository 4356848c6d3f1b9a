"""The chassis for a Flask service (the extra `flotilla-kit[flask]`).

`create_flask_app(settings, name=..., blueprints=..., readiness=...)` gives a Flask app
what `flotilla_kit.app.create_service_app` gives a FastAPI one, from the same kit parts:
the same settings (`flotilla_kit.settings.load_settings`), ECS log lines carrying the
request id and trace id (`flotilla_kit.context`, set per request from `X-Request-ID` and
`traceparent`; `X-Request-ID` is echoed), RFC 9457 problems for every error (404, 405,
413 over `max_body_bytes`, 422 with FastAPI's `errors` members, 500 logged, no trace in
the body), `/livez`, `/readyz`, `/metrics` with the same metric names and labels
(`flotilla_kit.metrics.HttpMetrics`, the route label a template such as
`/api/v1/items/{item_id}`), the same `TokenVerifier` (JWKS cache, revocations), and
traces continued from `traceparent` (the kit's `HttpClient` passes them on). Every view
declares who may call it: `require_permission("orders:read")`, `authenticated` or
`public`; a view without one stops the build (deny by default). `request_model(Model)`
reads a JSON body into a request model (`flotilla_kit.text.ApiModel`).
`GET /openapi.json` documents every view's route (as FastAPI's document would: summary
from the docstring, path parameters, the access rule, `security` unless public, the
kit's `Problem` for errors); `@documented(body=Model, response=Model, query=Model)`
declares the models a view reads and answers, since its body is read inside it.

**Async parts in a sync app.** The verifier, the JWKS cache, the revocation list, the
readiness checks and `HttpClient` are asyncio code, written once for the FastAPI
services. A WSGI app has no event loop, so the app owns one: a `BackgroundLoop`, one
thread running one loop for the life of the serving process (that loop, the chassis and
the observing WSGI wrapper are `flotilla_kit.wsgi`'s, shared with the Django chassis).
It is started where the app serves (`serve_wsgi` starts it in the worker process, after
the fork: a fork copies no thread, and a loop made before it would be dead in the
worker), fetches the keys and revocations before the first request, keeps refreshing
them there, enters the service's `lifespan` (`create_flask_app(..., lifespan=...)`: a
`Database`, inbox consumers), and is stopped when serving ends (lifespan exited,
refreshers cancelled, the revocation client closed). A request thread runs a coroutine
on it and waits (`chassis.run(coroutine)`, in a copy of the request's context, so the
coroutine's log lines and calls carry the request and its trace). The other designs
were worse: `asyncio.run` per call makes a loop per request and cannot share the
cache's lock, keys or kept-alive connections across requests; a loop per request thread
multiplies the refreshers; rewriting the verifier synchronously would make two verifiers
to keep equal. A token seen before is checked without the hop (`TokenVerifier.cached`),
so an authenticated request pays the hop once per token, not per request.

**What differs from FastAPI.** A view without an access rule is refused when the app
is built (FastAPI's routes have no such check: there the gateway's deny-by-default
policy and each route's dependency do it); request bodies are read with
`request_model(...)` inside the view rather than declared in its signature (so the
OpenAPI document knows it from `@documented(body=...)`); an answer is collected whole
before it is sent (the services answer JSON documents).
"""

from __future__ import annotations

from flotilla_kit.flask._app import (
    FlotillaFlask,
    authenticated,
    create_flask_app,
    current_principal,
    public,
    request_model,
    require_permission,
)
from flotilla_kit.wsgi import BackgroundLoop, SharedDrain, documented
from flotilla_kit.wsgi import Chassis as FlaskChassis

__all__ = [
    "BackgroundLoop",
    "FlaskChassis",
    "FlotillaFlask",
    "SharedDrain",
    "authenticated",
    "create_flask_app",
    "current_principal",
    "documented",
    "public",
    "request_model",
    "require_permission",
]
