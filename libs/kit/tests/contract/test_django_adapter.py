"""What only the Django REST framework adapter has, beside the contract every framework
keeps: the access rule each DRF view must declare (at build time, and REST framework's
default permission class as a second line), the 406 for an `Accept` no renderer serves,
DRF serializers' errors as FastAPI's, the route label from Django's resolver, `run` and
the lifespan on the chassis's event loop. Requests go through the app's WSGI callable
(the chassis and Django's handler, as `serve_wsgi` calls them)."""

from __future__ import annotations

from flotilla_kit import django as kit  # configures Django before REST framework's views

# isort: split
import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import include, path, re_path
from pydantic import Field
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from flotilla_kit.context import current_request_id
from flotilla_kit.problems import PROBLEM_CONTENT_TYPE, Problem
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing import TokenMinter
from flotilla_kit.text import ApiModel


def _settings() -> ServiceSettings:
    return ServiceSettings(service_name="adapter", log_level="warning")


def _app(urlpatterns: list[Any], **kwargs: Any) -> kit.FlotillaDjango:
    return kit.create_django_app(
        _settings(), name="adapter", urlpatterns=urlpatterns, readiness={},
        verifier=kwargs.pop("verifier", None) or TokenMinter().verifier(), **kwargs,
    )  # fmt: skip


@pytest.fixture
def served() -> Iterator[list[kit.FlotillaDjango]]:
    """Apps a test serves, stopped after it."""
    apps: list[kit.FlotillaDjango] = []
    yield apps
    for app in apps:
        app.chassis.stop()


def _client(app: kit.FlotillaDjango, served: list[kit.FlotillaDjango]) -> httpx.Client:
    served.append(app)
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://billing")


# --- deny by default ------------------------------------------------------------------


@api_view(["GET"])
def forgotten(request: Request) -> Response:
    return Response({})


class Undeclared(APIView):
    def get(self, request: Request) -> Response:
        return Response({})


class EmptyRule(APIView):
    permission_classes = []

    def get(self, request: Request) -> Response:
        return Response({})


def plain_django(request: HttpRequest) -> HttpResponse:
    return HttpResponse("not a DRF view")


@api_view(["GET"])
@permission_classes([kit.public])
def said(request: Request) -> Response:
    return Response({"said": True})


def test_views_without_an_access_rule_stop_the_build() -> None:
    with pytest.raises(TypeError) as refused:
        _app(
            [
                path("api/v1/said", said),
                path("api/v1/forgotten", forgotten),
                path("api/v1/", include([path("undeclared", Undeclared.as_view())])),
                path("api/v1/empty", EmptyRule.as_view()),
                path("api/v1/plain", plain_django),
            ]
        )
    message = str(refused.value)
    assert message.startswith("views without an access rule: ")
    assert "/api/v1/forgotten (forgotten) declares no permission_classes" in message
    assert "/api/v1/undeclared (Undeclared) declares no permission_classes" in message
    assert "/api/v1/empty (EmptyRule) has empty permission_classes" in message
    assert "/api/v1/plain is not a REST framework view" in message
    assert "said" not in message


def test_a_view_whose_rule_is_taken_away_after_the_build_is_refused(
    served: list[kit.FlotillaDjango],
) -> None:
    class Later(APIView):
        permission_classes = [kit.public]

        def get(self, request: Request) -> Response:
            return Response({"served": True})

    client = _client(_app([path("api/v1/later", Later.as_view())]), served)
    assert client.get("/api/v1/later").status_code == 200
    Later.permission_classes = list(APIView.permission_classes)  # the default, not declared
    response = client.get("/api/v1/later")
    assert response.status_code == 403
    assert response.json()["detail"] == "This route declares no access rule."


def test_an_authenticated_view_takes_any_valid_token(served: list[kit.FlotillaDjango]) -> None:
    minter = TokenMinter()

    @api_view(["GET"])
    @permission_classes([kit.authenticated])
    def me(request: Request) -> Response:
        return Response({"subject": kit.current_principal(request).subject})

    client = _client(_app([path("api/v1/me", me)], verifier=minter.verifier()), served)
    token = minter.mint("bob", roles=["load-test"])  # no permission at all
    answer = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.json() == {"subject": "bob"}
    refused = client.get("/api/v1/me")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")


def test_current_principal_needs_a_view_that_checks_the_token(
    served: list[kit.FlotillaDjango],
) -> None:
    @api_view(["GET"])
    @permission_classes([kit.public])
    def anyone(request: Request) -> Response:
        return Response({"subject": kit.current_principal(request).subject})

    response = _client(_app([path("api/v1/anyone", anyone)]), served).get("/api/v1/anyone")
    assert response.status_code == 500  # a programming error, logged


# --- content negotiation, errors inside views -------------------------------------------


def test_an_accept_no_renderer_serves_is_a_406_problem(served: list[kit.FlotillaDjango]) -> None:
    client = _client(_app([path("api/v1/said", said)]), served)
    response = client.get("/api/v1/said", headers={"Accept": "text/html"})
    assert response.status_code == 406
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.json()["type"].endswith("/not-acceptable")
    assert client.get("/api/v1/said", headers={"Accept": "application/json"}).status_code == 200
    assert client.get("/api/v1/said", headers={"Accept": "*/*"}).status_code == 200


def test_probes_and_scrapes_answer_whatever_they_accept(served: list[kit.FlotillaDjango]) -> None:
    client = _client(_app([]), served)
    assert client.get("/metrics", headers={"Accept": "text/plain"}).status_code == 200
    assert client.get("/livez", headers={"Accept": "text/plain"}).status_code == 200
    refused = client.post("/livez")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"


def test_a_problem_or_http404_raised_in_a_view_is_answered(
    served: list[kit.FlotillaDjango],
) -> None:
    @api_view(["GET"])
    @permission_classes([kit.public])
    def conflict(request: Request) -> Response:
        raise Problem(409, "stock-conflict", "Stock conflict", "Two orders took it.")

    @api_view(["GET"])
    @permission_classes([kit.public])
    def missing(request: Request) -> Response:
        raise Http404("no such invoice")

    client = _client(
        _app([path("api/v1/conflict", conflict), path("api/v1/missing", missing)]), served
    )
    answer = client.get("/api/v1/conflict")
    assert (answer.status_code, answer.json()["detail"]) == (409, "Two orders took it.")
    assert answer.headers["content-type"] == PROBLEM_CONTENT_TYPE
    missing_answer = client.get("/api/v1/missing")
    assert missing_answer.status_code == 404
    assert "no such invoice" not in missing_answer.text  # Django's message is not sent


class Line(serializers.Serializer[Any]):
    sku = serializers.CharField(max_length=8)
    quantity = serializers.IntegerField(min_value=1)


class Invoice(serializers.Serializer[Any]):
    customer = serializers.CharField()
    lines = Line(many=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["customer"] == "nobody":
            raise serializers.ValidationError("nobody buys", code="no_customer")
        return attrs


def test_a_drf_serializers_errors_are_fastapis_errors(served: list[kit.FlotillaDjango]) -> None:
    @api_view(["POST"])
    @permission_classes([kit.public])
    def invoices(request: Request) -> Response:
        return Response(kit.validated_body(request, Invoice).validated_data, status=201)

    client = _client(_app([path("api/v1/invoices", invoices)]), served)
    response = client.post(
        "/api/v1/invoices",
        json={"customer": "", "lines": [{"sku": "A1", "quantity": 1}, {"sku": "B" * 9}]},
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"location": ["body", "customer"], "message": "This field may not be blank.",
         "code": "blank"},
        {"location": ["body", "lines", "1", "sku"],
         "message": "Ensure this field has no more than 8 characters.", "code": "max_length"},
        {"location": ["body", "lines", "1", "quantity"], "message": "This field is required.",
         "code": "required"},
    ]  # fmt: skip
    whole = client.post("/api/v1/invoices", json={"customer": "nobody", "lines": []})
    assert whole.json()["errors"] == [
        {"location": ["body"], "message": "nobody buys", "code": "no_customer"}
    ]
    taken = client.post("/api/v1/invoices", json={"customer": "ann", "lines": []})
    assert (taken.status_code, taken.json()) == (201, {"customer": "ann", "lines": []})


# --- route labels ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "template"),
    [
        ("api/v1/items/<item_id>", "/api/v1/items/{item_id}"),
        ("api/v1/items/<int:item_id>/lines/<uuid:line>", "/api/v1/items/{item_id}/lines/{line}"),
        ("^api/v1/items/(?P<item_id>[0-9]+)$", "/api/v1/items/{item_id}"),
        ("livez", "/livez"),
    ],
)
def test_routes_are_labelled_as_fastapi_labels_them(route: str, template: str) -> None:
    assert kit.route_template(route) == template


def test_the_metrics_label_a_route_inside_an_include_by_its_template(
    served: list[kit.FlotillaDjango],
) -> None:
    @api_view(["GET"])
    @permission_classes([kit.public])
    def line(request: Request, item_id: int, line_id: str) -> Response:
        return Response({})

    app = _app(
        [
            path("api/v1/", include([path("items/<int:item_id>/lines/<line_id>", line)])),
            re_path(r"^api/v2/items/(?P<item_id>[0-9]+)/lines/(?P<line_id>\w+)$", line),
        ]
    )
    client = _client(app, served)
    assert client.get("/api/v1/items/7/lines/a").status_code == 200
    assert client.get("/api/v2/items/7/lines/a").status_code == 200
    text = client.get("/metrics").text
    for route in (
        "/api/v1/items/{item_id}/lines/{line_id}",
        "/api/v2/items/{item_id}/lines/{line_id}",
    ):
        assert (
            f'flotilla_http_requests_total{{method="GET",route="{route}",service="adapter",'
            'status="200"}' in text
        )


# --- the event loop: run and lifespan ---------------------------------------------------


def test_run_takes_a_coroutine_to_the_apps_loop_in_the_requests_context(
    served: list[kit.FlotillaDjango],
) -> None:
    @api_view(["GET"])
    @permission_classes([kit.public])
    def hop(request: Request) -> Response:
        async def on_the_loop() -> str | None:
            await asyncio.sleep(0)
            return current_request_id()

        return Response({"request_id": kit.run(on_the_loop())})

    client = _client(_app([path("api/v1/hop", hop)]), served)
    answer = client.get("/api/v1/hop", headers={"X-Request-ID": "hop-1"})
    assert answer.json() == {"request_id": "hop-1"}

    async def outside() -> None:
        return None

    with pytest.raises(RuntimeError, match="run\\(\\.\\.\\.\\) is for a request's thread"):
        kit.run(outside())


def test_the_lifespan_is_entered_on_the_loop_at_start_and_exited_at_stop() -> None:
    events: list[str] = []
    loops: list[asyncio.AbstractEventLoop] = []

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        loops.append(asyncio.get_running_loop())
        events.append("entered")
        yield
        events.append("exited")

    app = _app([], lifespan=lifespan)
    assert events == []  # built, not started: nothing runs before the fork
    app.chassis.start()
    try:
        assert events == ["entered"]

        async def which_loop() -> asyncio.AbstractEventLoop:
            return asyncio.get_running_loop()

        assert app.chassis.run(which_loop()) is loops[0]
        app.chassis.start()  # started once
        assert events == ["entered"]
    finally:
        app.chassis.stop()
    assert events == ["entered", "exited"]
    assert not app.chassis.started


def test_a_lifespan_that_fails_to_start_leaves_nothing_running() -> None:
    def connect() -> None:
        raise ConnectionRefusedError("the database is down")

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        connect()
        yield  # pragma: no cover

    app = _app([], lifespan=lifespan)
    with pytest.raises(ConnectionRefusedError, match="the database is down"):
        app.chassis.start()
    assert not app.chassis.started
    assert not app.chassis.loop.running


def test_what_django_refuses_inside_a_view_is_a_400_problem(
    served: list[kit.FlotillaDjango],
) -> None:
    @api_view(["GET"])
    @permission_classes([kit.public])
    def search(request: Request) -> Response:
        return Response({"terms": len(request.query_params)})

    client = _client(_app([path("api/v1/search", search)]), served)
    assert client.get("/api/v1/search", params={"q": "a"}).json() == {"terms": 1}
    flood = client.get("/api/v1/search", params=[(f"q{i}", "a") for i in range(1001)])
    assert flood.status_code == 400  # Django's TooManyFieldsSent, not its HTML page
    assert flood.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert flood.json()["type"].endswith("/bad-request")


def test_a_body_the_view_read_first_is_still_validated(served: list[kit.FlotillaDjango]) -> None:
    @api_view(["POST"])
    @permission_classes([kit.public])
    def peek(request: Request) -> Response:
        assert "customer" in request.data  # read before validated_body
        return Response(kit.validated_body(request, Invoice).validated_data)

    client = _client(_app([path("api/v1/peek", peek)]), served)
    answer = client.post("/api/v1/peek", json={"customer": "ann", "lines": []})
    assert (answer.status_code, answer.json()) == (200, {"customer": "ann", "lines": []})


# --- the OpenAPI document ----------------------------------------------------------------


class Thing(ApiModel):
    name: str


class ThingQuery(ApiModel):
    limit: int = Field(default=20, ge=1, le=100)
    after: str | None = None


@kit.documented(response=Thing, query=ThingQuery, alternatives={"application/pdf": "As a PDF."})
class ThingDetail(APIView):
    """Read a thing.

    Yours only."""

    permission_classes = [kit.require_permission("things:read")]

    def get(self, request: Request, thing_id: int) -> Response:
        return Response({"name": str(thing_id)})


class Things(APIView):
    permission_classes = [kit.authenticated]
    serializer_class = kit.model_serializer(Thing)

    def get_permissions(self) -> Sequence[Any]:
        if self.request.method == "POST":
            return [kit.require_permission("things:write")()]
        return super().get_permissions()

    def get(self, request: Request) -> Response:
        """List the things."""
        return Response([])

    @kit.documented(response=Thing, status=201)
    def post(self, request: Request) -> Response:
        return Response(kit.validated_body(request, self.serializer_class).data, status=201)


@kit.documented(body=Thing)
@api_view(["PUT"])
@permission_classes([kit.public])
def replace_thing(request: Request, thing_id: str) -> Response:
    """Replace a thing."""
    return Response({})


def test_the_openapi_document_says_what_each_view_declares(
    served: list[kit.FlotillaDjango],
) -> None:
    app = _app(
        [
            path("api/v1/things/<int:thing_id>", ThingDetail.as_view()),
            path("api/v1/things", Things.as_view()),
            re_path(r"^api/v1/other/(?P<thing_id>\w+)$", replace_thing),
        ]
    )
    response = _client(app, served).get("/openapi.json", headers={"Accept": "text/html"})
    assert response.status_code == 200  # public, whatever it accepts, as /metrics
    document = response.json()
    paths = document["paths"]
    # Only the service's routes: not /livez, /readyz, /metrics, /openapi.json.
    assert {(m, p) for p, item in paths.items() for m in item} == {
        ("get", "/api/v1/things/{thing_id}"),
        ("get", "/api/v1/things"),
        ("post", "/api/v1/things"),
        ("put", "/api/v1/other/{thing_id}"),
    }
    detail = paths["/api/v1/things/{thing_id}"]["get"]
    assert detail["summary"] == "Read a thing."
    assert detail["description"] == "Yours only.\n\nNeeds the permission `things:read`."
    assert detail["security"] == [{"bearer": []}]
    assert detail["operationId"] == "ThingDetail_api_v1_things__thing_id__get"
    parameters = {(p["in"], p["name"]): p for p in detail["parameters"]}
    assert parameters["path", "thing_id"]["schema"]["type"] == "integer"
    assert parameters["query", "limit"]["required"] is False
    assert parameters["query", "limit"]["schema"]["maximum"] == 100
    assert parameters["query", "after"]["schema"]["anyOf"][0]["pattern"]  # the text rule
    ok = detail["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/Thing"}
    assert ok["application/pdf"]["schema"]["contentMediaType"] == "application/pdf"
    assert {"401", "403", "404", "406", "422"} <= set(detail["responses"])
    assert document["components"]["schemas"]["Thing"]["required"] == ["name"]
    assert "bearer" in document["components"]["securitySchemes"]

    listed = paths["/api/v1/things"]["get"]
    assert listed["summary"] == "List the things."
    assert "403" not in listed["responses"]  # any valid token
    assert "requestBody" not in listed
    added = paths["/api/v1/things"]["post"]
    assert added["summary"] == "Things"  # no docstring: the view's name, as FastAPI's
    assert added["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Thing"
    }  # from serializer_class
    assert set(added["responses"]) >= {"201", "400", "401", "403", "413", "422"}
    # A rule per method (`get_permissions`): each operation says its own.
    assert listed["description"] == "Needs a valid access token (any caller)."
    assert added["description"] == "Needs the permission `things:write`."

    replaced = paths["/api/v1/other/{thing_id}"]["put"]
    assert replaced["summary"] == "Replace a thing."
    assert "security" not in replaced
    assert replaced["description"] == "Public: no access token needed."
    assert replaced["requestBody"]["required"] is True
