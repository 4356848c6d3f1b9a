"""`create_django_app`: a Django REST framework app wired like
`flotilla_kit.app.create_service_app`, served by `flotilla_kit.wsgi_server.serve_wsgi`."""

from __future__ import annotations

import contextvars
import dataclasses
import io
import re
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import URLPattern, URLResolver, path
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework.views import APIView

from flotilla_kit.app import token_verifier_for
from flotilla_kit.django import _problems
from flotilla_kit.django._access import (
    CHASSIS_KEY,
    PermissionRule,
    authenticated,
    public,
)
from flotilla_kit.django._problems import ApiModelSerializer
from flotilla_kit.health import ReadinessCheck
from flotilla_kit.problems import PROBLEM_CONTENT_TYPE, Problem
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.tokens import TokenVerifier
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

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["FlotillaDjango", "RouteLabel", "create_django_app", "route_template", "run"]

_T = TypeVar("_T")
_KIT_ROUTE = "__flotilla_kit_route__"
_GROUP = re.compile(r"\(\?P<([^<>]+)>[^)]*\)")
_WITH_BODY = frozenset({"post", "put", "patch"})
_current: contextvars.ContextVar[Chassis] = contextvars.ContextVar("flotilla_django_chassis")


def route_template(route: str) -> str:
    """Django's `api/v1/items/<int:item_id>` (or a `re_path`'s `(?P<item_id>...)`) as the
    FastAPI services label it: `/api/v1/items/{item_id}`."""
    template = placeholders_as_template(_GROUP.sub(r"{\1}", route))
    return "/" + template.removeprefix("^").removesuffix("$").removeprefix("/")


class RouteLabel:
    """Django middleware: leaves the route template of a resolved request where the
    observing WSGI wrapper reads it (metrics, access line, span)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        match = request.resolver_match
        if match is not None and match.route:
            request.META[ROUTE_KEY] = route_template(match.route)


def run(coroutine: Coroutine[Any, Any, _T], timeout_s: float | None = None) -> _T:
    """Run a coroutine on the event loop of the app serving this request and wait for it
    (the kit's async `Database`, `UnitOfWork`, `HttpClient` from a sync view)."""
    chassis = _current.get(None)
    if chassis is None:
        coroutine.close()
        raise RuntimeError("run(...) is for a request's thread; elsewhere use app.chassis.run(...)")
    return chassis.run(coroutine, timeout_s)


# --- deny by default ------------------------------------------------------------------------


def _views(
    patterns: Iterable[URLPattern | URLResolver], prefix: str = ""
) -> Iterator[tuple[str, Callable[..., Any]]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _views(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern.callback


def _without_access_rule(route: str, view: Callable[..., Any]) -> str | None:
    """Why the view at `route` declares no access rule, or None when it declares one."""
    if getattr(view, _KIT_ROUTE, False):
        return None
    cls = getattr(view, "cls", None)
    if not (isinstance(cls, type) and issubclass(cls, APIView)):
        return f"/{route} is not a REST framework view"
    declared = cls.permission_classes
    if declared is APIView.permission_classes:  # REST framework's default: not declared
        return f"/{route} ({cls.__name__}) declares no permission_classes"
    if not declared:
        return f"/{route} ({cls.__name__}) has empty permission_classes (say [public])"
    return None


def _refuse_views_without_access_rule(patterns: Sequence[URLPattern | URLResolver]) -> None:
    refused = [
        reason
        for route, view in _views(patterns)
        if (reason := _without_access_rule(route, view)) is not None
    ]
    if refused:
        raise TypeError(
            f"views without an access rule: {'; '.join(refused)}; give each DRF view "
            "permission_classes = [require_permission(...)], [authenticated] or [public] "
            "(deny by default)"
        )


# --- the OpenAPI document ---------------------------------------------------------------


def _access_of(cls: type[APIView], method: str) -> tuple[str, ...]:
    """The rules a request with `method` meets: the view's `get_permissions()` (which a
    view may override per method), else its `permission_classes`."""
    classes: list[Any]
    try:
        view = cls()
        view.request = SimpleNamespace(method=method.upper())  # type: ignore[assignment]
        classes = [type(rule) for rule in view.get_permissions()]
    except (AttributeError, TypeError):  # an override needing more than the method
        classes = list(cls.permission_classes)
    rules = []
    for rule in classes:
        if isinstance(rule, type) and issubclass(rule, public):
            rules.append("public")
        elif isinstance(rule, type) and issubclass(rule, authenticated):
            rules.append("authenticated")
        elif isinstance(rule, type) and issubclass(rule, PermissionRule):
            rules.append(rule.permission)
        else:
            rules.append(getattr(rule, "__name__", str(rule)))
    return tuple(rules)


def _declared(
    cls: type[APIView], handler: Callable[..., Any], view: Callable[..., Any], method: str
) -> Declared:
    """What `documented(...)` declared on the method, the `api_view` function or the
    class; a `model_serializer(Model)` as the class's `serializer_class` is the body."""
    declared: Declared = next(
        (d for d in (getattr(o, OPENAPI_KEY, None) for o in (handler, view, cls)) if d),
        Declared(),
    )
    serializer = getattr(cls, "serializer_class", None)
    if (
        declared.body is None
        and method in _WITH_BODY
        and isinstance(serializer, type)
        and issubclass(serializer, ApiModelSerializer)
    ):
        declared = dataclasses.replace(declared, body=serializer.model)
    return declared


def _operations(patterns: Sequence[URLPattern | URLResolver]) -> list[Operation]:
    """Every method of every REST framework view of the service, in the URLs' order."""
    found = []
    for route, view in _views(patterns):
        cls = getattr(view, "cls", None)
        if not (isinstance(cls, type) and issubclass(cls, APIView)):
            continue
        for method in cls.http_method_names:
            handler = getattr(cls, method, None)
            if method in ("head", "options") or handler is None:
                continue
            found.append(
                Operation(
                    method=method,
                    path=route_template(route),
                    name=cls.__name__,
                    doc=handler.__doc__ or cls.__doc__,
                    access=_access_of(cls, method),
                    declared=_declared(cls, handler, view, method),
                    path_types=path_types(route),
                )
            )
    return found


# --- the kit's routes: plain Django views (no content negotiation: a scraper's Accept) --


def _kit_routes(chassis: Chassis, document: dict[str, Any]) -> list[URLPattern]:
    def only_get(request: HttpRequest) -> HttpResponse | None:
        if request.method in ("GET", "HEAD"):
            return None
        problem = Problem(
            405, "method-not-allowed", "Method not allowed", headers={"Allow": "GET, HEAD"}
        )
        return _problems.problem_response(problem, request.path)

    def livez(request: HttpRequest) -> HttpResponse:
        return only_get(request) or JsonResponse({"status": "alive"})

    def readyz(request: HttpRequest) -> HttpResponse:
        if (refused := only_get(request)) is not None:
            return refused
        if chassis.drain.draining:
            problem = Problem(
                503, "draining", "Draining", "The instance is shutting down; send no more."
            )
            return _problems.problem_response(problem, request.path)
        results = chassis.check_readiness()
        if all(state == "ok" for state in results.values()):
            return JsonResponse({"status": "ready", "checks": results})
        problem = Problem(503, "not-ready", "Not ready", "A dependency is failing.", checks=results)
        return _problems.problem_response(problem, request.path)

    def metrics(request: HttpRequest) -> HttpResponse:
        refused = only_get(request)
        return refused or HttpResponse(chassis.metrics.render(), content_type=CONTENT_TYPE_LATEST)

    def openapi(request: HttpRequest) -> HttpResponse:
        return only_get(request) or JsonResponse(document)

    routes = []
    kit_views = [("livez", livez), ("readyz", readyz), ("metrics", metrics)]
    for route, view in [*kit_views, (DOCUMENT_PATH.removeprefix("/"), openapi)]:
        setattr(view, _KIT_ROUTE, True)
        routes.append(path(route, view))
    return routes


# --- the app ------------------------------------------------------------------------------


class _Urls:
    """An app's URLs: its patterns and the error views (`request.urlconf`)."""

    handler400 = staticmethod(_problems.handler400)
    handler403 = staticmethod(_problems.handler403)
    handler404 = staticmethod(_problems.handler404)
    handler500 = staticmethod(_problems.handler500)

    def __init__(self, urlpatterns: list[URLPattern | URLResolver]) -> None:
        self.urlpatterns = urlpatterns


class _Handler(WSGIHandler):
    """Django's WSGI handler, resolving against one app's URLs."""

    def __init__(self, urls: _Urls) -> None:
        super().__init__()
        self._urls = urls

    def get_response(self, request: HttpRequest) -> HttpResponseBase:
        request.urlconf = self._urls  # type: ignore[attr-defined]
        return super().get_response(request)


class FlotillaDjango:
    """A Django REST framework app with the kit's chassis: a WSGI callable that
    `serve_wsgi` serves (it starts and stops `chassis`)."""

    def __init__(self, name: str, handler: _Handler, chassis: Chassis) -> None:
        self.name = name
        self.chassis = chassis
        self._observed = ObservedWsgi(self._django, chassis)
        self._handler = handler

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self._observed(environ, start_response)

    def _django(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if (
            not environ.get("CONTENT_LENGTH")
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            # Django reads only a body of declared length: read the chunked one here
            # (capped at max_body_bytes by the chassis) and declare it.
            try:
                body = environ["wsgi.input"].read()
            except BodyTooLarge:
                problem = too_large(self.chassis.settings.max_body_bytes)
                answer = problem_bytes(problem, environ.get("PATH_INFO", ""))
                start_response(
                    f"{problem.status} {problem.title}",
                    [("Content-Type", PROBLEM_CONTENT_TYPE),
                     ("Content-Length", str(len(answer)))],
                )  # fmt: skip
                return [answer]
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        environ[CHASSIS_KEY] = self.chassis
        token = _current.set(self.chassis)
        try:
            return self._handler(environ, start_response)
        finally:
            _current.reset(token)


def create_django_app(
    settings: ServiceSettings,
    *,
    name: str,
    urlpatterns: Sequence[URLPattern | URLResolver],
    readiness: Mapping[str, ReadinessCheck],
    verifier: TokenVerifier | None = None,
    lifespan: Lifespan | None = None,
) -> FlotillaDjango:
    """The Django REST framework app of a service (`name` names it in logs): problem+json
    for every error, the request context and RED metrics per request, `/livez`,
    `/readyz`, `/metrics`, `/openapi.json` (the views' routes, permission classes and
    what `documented(...)` declares), token checks. Every view of `urlpatterns` is a DRF view that
    declares its `permission_classes` (`require_permission(...)`, `authenticated`,
    `public`); one that does not stops the build (`TypeError`). `lifespan` (an async
    context manager factory: a `Database`, consumers) is entered on the chassis's loop
    when serving starts and exited when it ends."""
    patterns = list(urlpatterns)
    _refuse_views_without_access_rule(patterns)
    chassis = Chassis(
        settings,
        verifier=verifier or token_verifier_for(settings),
        readiness=readiness,
        lifespan=lifespan,
    )
    document = openapi_document(name, _operations(patterns))
    handler = _Handler(_Urls([*patterns, *_kit_routes(chassis, document)]))
    return FlotillaDjango(name, handler, chassis)
