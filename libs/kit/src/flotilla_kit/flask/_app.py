"""`create_flask_app`: a Flask app wired like `flotilla_kit.app.create_service_app`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from typing import ParamSpec, TypeVar, cast

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from flotilla_kit.app import token_verifier_for
from flotilla_kit.db import TextNotStorable
from flotilla_kit.health import ReadinessCheck
from flotilla_kit.logs import get_logger
from flotilla_kit.problems import GENERIC_PROBLEMS, PROBLEM_CONTENT_TYPE, Problem, refused_text
from flotilla_kit.security import forbidden
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.text import TextRefused
from flotilla_kit.tokens import Principal, TokenVerifier
from flotilla_kit.wsgi import (
    DOCUMENT_PATH,
    OPENAPI_KEY,
    ROUTE_KEY,
    BodyTooLarge,
    Chassis,
    Declared,
    Lifespan,
    ObservedWsgi,
    Operation,
    openapi_document,
    path_types,
    placeholders_as_template,
    problem_bytes,
    too_large,
)

__all__ = [
    "FlotillaFlask",
    "authenticated",
    "create_flask_app",
    "current_principal",
    "public",
    "request_model",
    "require_permission",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_M = TypeVar("_M", bound=BaseModel)

_problems_log = get_logger("flotilla.problems")
# Set on a view by the decorators below: who may call it.
_ACCESS = "__flotilla_access__"
# Set on the kit's own views (`/livez`, ...): left out of the OpenAPI document.
_KIT_ROUTE = "__flotilla_kit_route__"


class FlotillaFlask(Flask):
    """A Flask app with the kit's chassis (`serve_wsgi` starts and stops it)."""

    chassis: Chassis


def _route_template(rule: str) -> str:
    """Flask's `/items/<int:item_id>` as the FastAPI services label it: `/items/{item_id}`."""
    return placeholders_as_template(rule)


# --- access to a view: deny by default -------------------------------------------------


def _principal_of_request() -> Principal:
    chassis = cast(FlotillaFlask, current_app).chassis
    return chassis.principal(request.headers.get("Authorization", ""))


def current_principal() -> Principal:
    """The caller of an `authenticated` or `require_permission` view."""
    principal: Principal = g.flotilla_principal
    return principal


def _marked(view: Callable[_P, _R], access: str) -> Callable[_P, _R]:
    setattr(view, _ACCESS, access)
    return view


def public(view: Callable[_P, _R]) -> Callable[_P, _R]:
    """A view anyone may call (say so: a view without an access rule is refused)."""
    return _marked(view, "public")


def authenticated(view: Callable[_P, _R]) -> Callable[_P, _R]:
    """A view for any caller with a valid access token (`current_principal()`)."""

    @wraps(view)
    def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        g.flotilla_principal = _principal_of_request()
        return view(*args, **kwargs)

    return _marked(checked, "authenticated")


def require_permission(permission: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """A view for callers whose roles grant `permission` (401 without a valid token, 403
    without the permission), as `flotilla_kit.security.require_permission`."""

    def decorate(view: Callable[_P, _R]) -> Callable[_P, _R]:
        @wraps(view)
        def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            principal = _principal_of_request()
            if not principal.can(permission):
                raise forbidden(permission)
            g.flotilla_principal = principal
            return view(*args, **kwargs)

        return _marked(checked, f"permission {permission}")

    return decorate


def _refuse_views_without_access_rule(app: Flask) -> None:
    unmarked = sorted(
        endpoint for endpoint, view in app.view_functions.items() if not hasattr(view, _ACCESS)
    )
    if unmarked:
        raise TypeError(
            f"views without an access rule: {', '.join(unmarked)}; decorate each with "
            "@require_permission(...), @authenticated or @public (deny by default)"
        )


# --- request bodies ----------------------------------------------------------------------


def request_model(model: type[_M]) -> _M:
    """The JSON body as `model` (an `ApiModel`): 400 `malformed-json` when it is not JSON,
    422 `validation-error` naming each field (`["body", ...]`) as FastAPI's would."""
    data = request.get_data(cache=True)
    if not data.strip():
        raise Problem(
            422, "validation-error", "Request validation failed",
            "One or more fields are missing or invalid.",
            errors=[{"location": ["body"], "message": "Field required", "code": "missing"}],
        )  # fmt: skip
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        errors = exc.errors()
        if any(error["type"] == "json_invalid" for error in errors):
            raise Problem(
                400, "malformed-json", "Malformed JSON", "The request body is not valid JSON."
            ) from None
        raise Problem(
            422, "validation-error", "Request validation failed",
            "One or more fields are missing or invalid.",
            errors=[
                {"location": ["body", *map(str, e["loc"])], "message": e["msg"], "code": e["type"]}
                for e in errors
            ],
        ) from None  # fmt: skip


# --- the OpenAPI document -------------------------------------------------------------


def _operations(app: Flask) -> list[Operation]:
    """Every method of every route of the service's views (not the kit's), in the order
    they were added."""
    found = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        if view is None or getattr(view, _KIT_ROUTE, False):
            continue
        access = getattr(view, _ACCESS, "")
        declared = getattr(view, OPENAPI_KEY, Declared())
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append(
                Operation(
                    method=method.lower(),
                    path=_route_template(rule.rule),
                    name=view.__name__,
                    doc=view.__doc__,
                    access=(access.removeprefix("permission "),),
                    declared=declared,
                    path_types=path_types(rule.rule),
                )
            )
    return found


# --- errors as problems -----------------------------------------------------------------


def _respond(problem: Problem) -> Response:
    response = Response(
        problem_bytes(problem, request.path), status=problem.status, mimetype=PROBLEM_CONTENT_TYPE
    )
    response.headers.update(problem.headers)
    return response


def _install_problem_handlers(app: Flask, max_body_bytes: int) -> None:
    def on_problem(exc: Problem) -> Response:
        return _respond(exc)

    def on_too_large(exc: BodyTooLarge) -> Response:
        return _respond(too_large(max_body_bytes))

    def on_http(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            return _respond(too_large(max_body_bytes))
        slug, title = GENERIC_PROBLEMS.get(status, ("http-error", "HTTP error"))
        headers = {
            k: v
            for k, v in exc.get_headers()
            if k.lower() not in ("content-type", "content-length")
        }
        return _respond(Problem(status, slug, title, headers=headers))

    def on_text_refused(exc: TextRefused) -> Response:
        return _respond(refused_text(exc.field.split("."), exc.reason))

    def on_text_not_storable(exc: TextNotStorable) -> Response:
        _problems_log.warning("text the database cannot store reached it", path=request.path)
        return _respond(
            Problem(
                422, "validation-error", "Request validation failed",
                "The request holds a character no field accepts (a NUL or a lone surrogate).",
            )
        )  # fmt: skip

    def on_unexpected(exc: Exception) -> Response:
        # The traceback goes to the log (with the request id), never to the client.
        _problems_log.error("unhandled exception", exc_info=exc, path=request.path)
        return _respond(
            Problem(500, "internal-error", "Internal server error", "The error was logged.")
        )

    app.register_error_handler(Problem, on_problem)
    app.register_error_handler(BodyTooLarge, on_too_large)
    app.register_error_handler(HTTPException, on_http)
    app.register_error_handler(TextRefused, on_text_refused)
    app.register_error_handler(TextNotStorable, on_text_not_storable)
    app.register_error_handler(Exception, on_unexpected)


# --- the app ---------------------------------------------------------------------------


def _kit_routes(app: FlotillaFlask, document: dict[str, object]) -> None:
    chassis = app.chassis

    @public
    def livez() -> Response:
        return jsonify({"status": "alive"})

    @public
    def readyz() -> Response:
        if chassis.drain.draining:
            raise Problem(
                503, "draining", "Draining", "The instance is shutting down; send no more."
            )
        results = chassis.check_readiness()
        if all(state == "ok" for state in results.values()):
            return jsonify({"status": "ready", "checks": results})
        raise Problem(503, "not-ready", "Not ready", "A dependency is failing.", checks=results)

    @public
    def metrics() -> Response:
        return Response(chassis.metrics.render(), content_type=CONTENT_TYPE_LATEST)

    @public
    def openapi() -> Response:
        return jsonify(document)

    for path, view in (
        ("/livez", livez), ("/readyz", readyz), ("/metrics", metrics), (DOCUMENT_PATH, openapi)
    ):  # fmt: skip
        setattr(view, _KIT_ROUTE, True)
        app.add_url_rule(path, view_func=view, methods=["GET"])


def create_flask_app(
    settings: ServiceSettings,
    *,
    name: str,
    blueprints: Sequence[Blueprint],
    readiness: Mapping[str, ReadinessCheck],
    verifier: TokenVerifier | None = None,
    lifespan: Lifespan | None = None,
) -> FlotillaFlask:
    """The Flask app of a service: problem+json for every error, the request context and
    RED metrics per request, `/livez`, `/readyz`, `/metrics`, `/openapi.json` (the
    views' routes, access rules and what `documented(...)` declares), token checks. Every view
    declares who may call it (`require_permission`, `authenticated`, `public`); a view
    without one stops the build (`TypeError`). `lifespan` (an async context manager
    factory: a `Database`, consumers) is entered on the chassis's loop when serving
    starts and exited when it ends."""
    app = FlotillaFlask(name, static_folder=None)
    # The body limit is the chassis's (`ObservedWsgi`): a declared length over it is
    # answered before Flask, a chunked body is cut off as it is read.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.chassis = chassis = Chassis(
        settings,
        verifier=verifier or token_verifier_for(settings),
        readiness=readiness,
        lifespan=lifespan,
    )
    _install_problem_handlers(app, settings.max_body_bytes)

    @app.before_request
    def note_the_route() -> None:
        rule = request.url_rule
        if rule is not None:
            request.environ[ROUTE_KEY] = _route_template(rule.rule)
        view = app.view_functions.get(request.endpoint or "")
        if view is not None and not hasattr(view, _ACCESS):  # added after the build
            raise Problem(403, "forbidden", "Forbidden", "This route declares no access rule.")

    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    _refuse_views_without_access_rule(app)
    _kit_routes(app, openapi_document(name, _operations(app)))
    app.wsgi_app = ObservedWsgi(app.wsgi_app, chassis)  # type: ignore[method-assign]
    return app
