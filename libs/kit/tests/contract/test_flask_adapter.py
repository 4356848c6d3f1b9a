"""What only the Flask adapter has, beside the contract every framework keeps: the
access rule each view must declare, the event loop thread the async kit runs on (shared
with the Django chassis: `flotilla_kit.wsgi`), the lifespan, and the drain flag shared
with the server's worker process."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from flask import Blueprint, Response, jsonify
from pydantic import Field

from flotilla_kit.context import RequestContext, current_request_id, reset_context, set_context
from flotilla_kit.flask import (
    BackgroundLoop,
    SharedDrain,
    authenticated,
    create_flask_app,
    documented,
    public,
    request_model,
    require_permission,
)
from flotilla_kit.flask._app import _route_template
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing import TokenMinter
from flotilla_kit.text import ApiModel


def _settings() -> ServiceSettings:
    return ServiceSettings(service_name="adapter", log_level="warning")


def test_a_view_without_an_access_rule_stops_the_build() -> None:
    routes = Blueprint("open", __name__)

    @routes.get("/api/v1/forgotten")
    def forgotten() -> Response:
        return jsonify({})

    @routes.get("/api/v1/said")
    @public
    def said() -> Response:
        return jsonify({})

    with pytest.raises(TypeError, match=r"views without an access rule: open\.forgotten;"):
        create_flask_app(
            _settings(), name="adapter", blueprints=[routes], readiness={},
            verifier=TokenMinter().verifier(),
        )  # fmt: skip


def test_a_view_added_after_the_build_without_a_rule_is_refused() -> None:
    app = create_flask_app(
        _settings(), name="adapter", blueprints=[], readiness={}, verifier=TokenMinter().verifier()
    )
    app.add_url_rule("/api/v1/late", "late", lambda: jsonify({"served": True}))
    try:
        response = app.test_client().get("/api/v1/late")
    finally:
        app.chassis.stop()
    assert response.status_code == 403
    assert response.json is not None
    assert response.json["detail"] == "This route declares no access rule."


def test_an_authenticated_view_takes_any_valid_token() -> None:
    minter = TokenMinter()
    routes = Blueprint("who", __name__)

    @routes.get("/api/v1/me")
    @authenticated
    def me() -> Response:
        return jsonify({})

    app = create_flask_app(
        _settings(), name="adapter", blueprints=[routes], readiness={}, verifier=minter.verifier()
    )
    client = app.test_client()
    try:
        token = minter.mint(roles=["load-test"])  # no permission at all
        assert (
            client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
        assert client.get("/api/v1/me").status_code == 401
    finally:
        app.chassis.stop()


@pytest.mark.parametrize(
    ("rule", "template"),
    [
        ("/api/v1/items/<item_id>", "/api/v1/items/{item_id}"),
        ("/api/v1/items/<int:item_id>/lines/<uuid:line>", "/api/v1/items/{item_id}/lines/{line}"),
        ("/livez", "/livez"),
    ],
)
def test_routes_are_labelled_as_fastapi_labels_them(rule: str, template: str) -> None:
    assert _route_template(rule) == template


def test_a_coroutine_runs_on_the_loop_in_the_callers_context() -> None:
    loop = BackgroundLoop("test")
    loop.start()
    token = set_context(RequestContext("rid-loop", "a" * 32, "b" * 16))
    try:

        async def seen() -> tuple[str | None, bool]:
            return current_request_id(), asyncio.get_running_loop() is not None

        assert loop.run(seen()) == ("rid-loop", True)

        async def fails() -> None:
            raise LookupError("from the loop")

        with pytest.raises(LookupError, match="from the loop"):
            loop.run(fails())
        with pytest.raises(TimeoutError):
            loop.run(asyncio.sleep(5), timeout_s=0.05)
    finally:
        reset_context(token)
        loop.stop()
    assert not loop.running


def test_a_loop_that_is_not_running_says_so() -> None:
    loop = BackgroundLoop("idle")

    async def nothing() -> None:
        return None

    with pytest.raises(RuntimeError, match="event loop of idle is not running"):
        loop.run(nothing())


def _in_child(check: bool) -> None:
    # The child reports with its exit status: 0 when `check` holds.
    os._exit(0 if check else 1)


def test_a_forked_process_has_no_loop_until_it_starts_its_own() -> None:
    loop = BackgroundLoop("parent")
    loop.start()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            running_before = loop.running
            loop.start()
            _in_child(not running_before and loop.running)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert loop.running
    finally:
        loop.stop()


def test_the_drain_started_in_one_process_is_seen_in_the_forked_one() -> None:
    drain = SharedDrain()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: the worker answering /readyz
        deadline = time.monotonic() + 10
        while not drain.draining and time.monotonic() < deadline:
            os.sched_yield()
        _in_child(drain.draining)
    drain.start()  # the supervisor, on SIGTERM
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_lifespan_runs_from_the_start_of_serving_to_its_stop() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        events.append("entered")
        yield
        events.append("exited")

    app = create_flask_app(
        _settings(), name="adapter", blueprints=[], readiness={},
        verifier=TokenMinter().verifier(), lifespan=lifespan,
    )  # fmt: skip
    assert events == []
    try:
        assert app.test_client().get("/livez").status_code == 200  # a request starts it
        assert events == ["entered"]
    finally:
        app.chassis.stop()
    assert events == ["entered", "exited"]


# --- the OpenAPI document ----------------------------------------------------------------


class Thing(ApiModel):
    name: str


class ThingQuery(ApiModel):
    limit: int = Field(default=20, ge=1, le=100)


def test_the_openapi_document_says_what_each_view_declares() -> None:
    routes = Blueprint("things", __name__)

    @routes.get("/api/v1/things/<int:thing_id>")
    @require_permission("things:read")
    @documented(response=Thing, query=ThingQuery, alternatives={"application/pdf": "A PDF."})
    def thing(thing_id: int) -> Response:
        """Read a thing.

        Yours only."""
        return jsonify({"name": str(thing_id)})

    @routes.post("/api/v1/things")
    @documented(body=Thing, response=Thing, status=201)  # above the rule works as well
    @authenticated
    def add_thing() -> tuple[Response, int]:
        return jsonify(request_model(Thing).model_dump()), 201

    app = create_flask_app(
        _settings(), name="adapter", blueprints=[routes], readiness={},
        verifier=TokenMinter().verifier(),
    )  # fmt: skip
    try:
        response = app.test_client().get("/openapi.json")
    finally:
        app.chassis.stop()
    assert response.status_code == 200
    document = response.get_json()
    paths = document["paths"]
    # Only the service's routes: not /livez, /readyz, /metrics, /openapi.json.
    assert {(m, p) for p, item in paths.items() for m in item} == {
        ("get", "/api/v1/things/{thing_id}"),
        ("post", "/api/v1/things"),
    }
    read = paths["/api/v1/things/{thing_id}"]["get"]
    assert read["summary"] == "Read a thing."
    assert read["description"] == "Yours only.\n\nNeeds the permission `things:read`."
    assert read["operationId"] == "thing_api_v1_things__thing_id__get"
    assert read["security"] == [{"bearer": []}]
    parameters = {(p["in"], p["name"]): p for p in read["parameters"]}
    assert parameters["path", "thing_id"]["schema"]["type"] == "integer"
    assert parameters["query", "limit"]["schema"]["maximum"] == 100
    ok = read["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/Thing"}
    assert ok["application/pdf"]["schema"]["contentMediaType"] == "application/pdf"
    added = paths["/api/v1/things"]["post"]
    assert added["summary"] == "Add Thing"  # no docstring: FastAPI's summary of its name
    assert added["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Thing"
    }
    assert set(added["responses"]) == {"201", "400", "401", "413", "422"}
    assert added["description"] == "Needs a valid access token (any caller)."
