"""The chassis for a Django REST framework service (the extra `flotilla-kit[django]`).

`create_django_app(settings, name=..., urlpatterns=..., readiness=...)` gives a DRF app
what `flotilla_kit.app.create_service_app` gives a FastAPI one and
`flotilla_kit.flask.create_flask_app` a Flask one, from the same parts
(`flotilla_kit.wsgi`: the event loop thread, the chassis, the observing WSGI wrapper):
ECS log lines with the request id and trace id, `X-Request-ID` echoed, `traceparent`
continued, RFC 9457 problems for every error (404, 405, 406 for an `Accept` no renderer
serves, 413 over `max_body_bytes`, 422 with FastAPI's `errors` members, 400 for
malformed JSON, 401 with `WWW-Authenticate`, 403, 500 logged without its trace in the
body), `/livez`, `/readyz`, `/metrics` with the same metric names and labels (the route a
template such as `/api/v1/items/{item_id}`, from Django's resolver), and the same
`TokenVerifier`. It is a WSGI callable served by `flotilla_kit.wsgi_server.serve_wsgi`,
as a Flask app is.

**Access, deny by default.** Every DRF view declares `permission_classes`:
`[require_permission("invoices:read")]`, `[authenticated]` or `[public]` (or
`@permission_classes([...])` under `@api_view`). A view that declares none, or a plain
Django view, stops the build (`TypeError`); REST framework's default permission class
refuses everything, as a second line. `current_principal(request)` is the caller.

**Bodies.** `validated_body(request, Serializer)` reads the JSON body with a DRF
serializer: 422 `missing` for no body, 400 `malformed-json`, 422 `validation-error`
naming each field (`["body", "field", ...]`, DRF's message and code). A serializer made
by `model_serializer(Model)` validates with a kit request model (`flotilla_kit.text.
ApiModel`): the same rules, messages and codes as the FastAPI and Flask services.

**The OpenAPI document.** `GET /openapi.json` (public) documents every DRF view's
route as FastAPI's document would (summary from the docstring, path parameters, the
permission classes in the description and `security` unless public, the kit's `Problem`
for errors). A view's `serializer_class = model_serializer(Model)` is the body of its
POST, PUT and PATCH; `@documented(body=..., response=..., query=..., alternatives=...)`
on the view class, one of its methods or above `@api_view` declares the rest.

**Async kit parts.** `run(coroutine)` runs a coroutine on the app's event loop from a
view (the kit's `Database`, `UnitOfWork`, `HttpClient`); `lifespan` (an async context
manager factory) is entered on that loop when serving starts, in the worker process,
and exited when it stops: the place for a `Database`, inbox consumers, other background
tasks. Django's ORM is not used: data goes through `flotilla_kit.db`, so the outbox,
inbox, audit log and consumers are the kit's.

**Django's settings** are the kit's, configured in code when this package is imported
(`_setup.py`: no database, no sessions/admin/auth apps, no CSRF, `DEBUG` off, every
host allowed behind the gateway, JSON only). REST framework reads them when
`rest_framework.views` is imported, so a service's package `__init__.py` imports
`flotilla_kit.django` before any module of its own imports REST framework.

**What differs from Flask.** Bodies through DRF serializers (`validated_body`) rather
than `request_model`; an `Accept` no renderer serves is a 406 (Flask ignores `Accept`);
a chunked body is read whole (up to the limit) before Django sees it, since Django
reads only bodies of declared length.

**Cost.** Measured here (2 cores shared with other work, load average 2.4 to 2.9 during
the runs: compare within the table, not with `flotilla_kit.wsgi_server`'s figures, taken
under other load): an app from `create_django_app` answering an authenticated GET
(`require_permission`, a token seen before, access log on) under `serve_wsgi`, wrk for
8 s over loopback after a 2 s warm-up, CPU summed over the server's processes; the same
route from `create_flask_app`, run alongside, for reference.

| app under `serve_wsgi`: req/s, µs CPU per request | 8 connections | 1 connection |
|---|---|---|
| Django 5.2 + REST framework 3.18 | 3,418/s, 273 µs | 2,932/s, 311 µs |
| Flask 3.1, for reference | 3,047/s, 300 µs | |

Django's handler and REST framework's view (content negotiation, permission classes,
renderer) cost about what Flask's routing and `jsonify` do: the chassis's share (request
context, metrics, access line, span, token check) is the same code on both.
"""

from __future__ import annotations

from flotilla_kit.django._setup import configure_django

# isort: split
configure_django()  # before anything imports rest_framework.views (it reads the settings)

# isort: split
from flotilla_kit.django._access import (  # noqa: E402 - after configure_django()
    authenticated,
    current_principal,
    public,
    require_permission,
)
from flotilla_kit.django._app import (  # noqa: E402
    FlotillaDjango,
    create_django_app,
    route_template,
    run,
)
from flotilla_kit.django._problems import (  # noqa: E402
    ApiModelSerializer,
    model_serializer,
    validated_body,
)
from flotilla_kit.wsgi import documented  # noqa: E402

__all__ = [
    "ApiModelSerializer",
    "FlotillaDjango",
    "authenticated",
    "configure_django",
    "create_django_app",
    "current_principal",
    "documented",
    "model_serializer",
    "public",
    "require_permission",
    "route_template",
    "run",
    "validated_body",
]
