"""What every WSGI chassis of the kit shares, whatever the framework (`flotilla_kit.flask`,
`flotilla_kit.django`): the event loop thread the async kit runs on (`BackgroundLoop`),
the object an app owns beside its framework (`Chassis`: settings, metrics, access log,
verifier, drain flag, readiness checks, lifespan), and the WSGI wrapper that observes
every request (`ObservedWsgi`: request id and trace context, body limit, the kit's text
rule for path and query, RED metrics, access line, span, last-resort 500). Nothing here
knows a framework: a body cut off past the limit raises `BodyTooLarge`, which each
adapter answers as the 413 problem, and an adapter leaves the route template of a
request in `environ[ROUTE_KEY]`. `openapi_document` writes the app's `/openapi.json` from
the operations each adapter finds in its routes, with what a view declared with
`documented(...)`. Served by `flotilla_kit.wsgi_server.serve_wsgi`."""

from __future__ import annotations

from flotilla_kit.wsgi._chassis import Chassis, Lifespan, SharedDrain
from flotilla_kit.wsgi._loop import BackgroundLoop
from flotilla_kit.wsgi._observed import (
    ROUTE_KEY,
    BodyTooLarge,
    ObservedWsgi,
    problem_bytes,
    too_large,
)
from flotilla_kit.wsgi._openapi import (
    DOCUMENT_PATH,
    OPENAPI_KEY,
    Declared,
    Operation,
    documented,
    openapi_document,
    path_types,
    placeholders_as_template,
)

__all__ = [
    "DOCUMENT_PATH",
    "OPENAPI_KEY",
    "ROUTE_KEY",
    "BackgroundLoop",
    "BodyTooLarge",
    "Chassis",
    "Declared",
    "Lifespan",
    "ObservedWsgi",
    "Operation",
    "SharedDrain",
    "documented",
    "openapi_document",
    "path_types",
    "placeholders_as_template",
    "problem_bytes",
    "too_large",
]
