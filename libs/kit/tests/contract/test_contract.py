"""One contract, every framework: each test runs against the same small service built on
the kit with FastAPI, Flask and Django REST framework (`served.KINDS`), served for
real, over HTTP."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from flotilla_kit.problems import PROBLEM_CONTENT_TYPE, problem_type
from flotilla_kit.testing import JWT_ATTACKS, REVOKED_SESSION, TokenMinter
from flotilla_kit.tls import client_context
from libs.kit.tests.contract.contract_service import ContractSettings, build_fastapi
from libs.kit.tests.contract.served import KINDS, MAX_BODY_BYTES, KeyServer, Service, start_service

_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
_PARENT_SPAN = "00f067aa0ba902b7"


def assert_problem(
    response: httpx.Response, status: int, slug: str, title: str
) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body: dict[str, object] = response.json()
    assert body["type"] == problem_type(slug)
    assert body["title"] == title
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


def field(line: dict[str, Any], name: str) -> Any:
    """An ECS field of a log line, `http.request.id` being `{"http": {"request": {"id"}}}`."""
    value: Any = line
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- problems ------------------------------------------------------------------------


def test_an_unknown_path_is_a_404_problem(client: httpx.Client) -> None:
    assert_problem(client.get("/api/v1/nowhere"), 404, "not-found", "Not found")


def test_a_path_with_a_trailing_slash_is_another_path(client: httpx.Client) -> None:
    assert_problem(client.get("/api/v1/public/"), 404, "not-found", "Not found")


def test_a_method_the_route_does_not_take_is_a_405_problem(client: httpx.Client) -> None:
    response = client.delete("/api/v1/public")
    assert_problem(response, 405, "method-not-allowed", "Method not allowed")
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize("sent", ["declared", "chunked"])
def test_a_body_over_the_limit_is_a_413_problem(client: httpx.Client, sent: str) -> None:
    body = b'{"name": "' + b"x" * MAX_BODY_BYTES + b'", "quantity": 1}'
    content = body if sent == "declared" else iter([body[:600], body[600:]])
    response = client.post(
        "/api/v1/items", content=content, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(response, 413, "payload-too-large", "Request body too large")
    assert problem["detail"] == f"The body must not exceed {MAX_BODY_BYTES} bytes."


def test_a_body_under_the_limit_is_taken(client: httpx.Client) -> None:
    response = client.post("/api/v1/items", json={"name": "Anvil", "quantity": 2})
    assert response.status_code == 201, response.text
    assert response.json() == {"name": "Anvil", "quantity": 2}


def test_an_invalid_body_is_a_422_problem_naming_each_field(client: httpx.Client) -> None:
    response = client.post("/api/v1/items", json={"name": "", "quantity": 0})
    problem = assert_problem(response, 422, "validation-error", "Request validation failed")
    assert problem["errors"] == [
        {
            "location": ["body", "name"],
            "message": "String should have at least 1 character",
            "code": "string_too_short",
        },
        {
            "location": ["body", "quantity"],
            "message": "Input should be greater than or equal to 1",
            "code": "greater_than_equal",
        },
    ]


def test_text_the_kit_refuses_is_a_422_problem(client: httpx.Client) -> None:
    response = client.post("/api/v1/items", json={"name": "a\x00b", "quantity": 1})
    problem = assert_problem(response, 422, "validation-error", "Request validation failed")
    assert problem["errors"] == [
        {
            "location": ["body", "name"],
            "message": "Value error, the value holds a control character (U+0000) at position 1",
            "code": "value_error",
        }
    ]


def test_a_refused_character_in_the_query_is_a_422_problem(client: httpx.Client) -> None:
    response = client.get("/api/v1/public", params={"q": "a\nb"})
    problem = assert_problem(response, 422, "validation-error", "Request validation failed")
    assert problem["errors"][0]["location"] == ["query", "q"]  # type: ignore[index]


def test_a_missing_body_is_a_422_problem(client: httpx.Client) -> None:
    response = client.post("/api/v1/items", headers={"Content-Type": "application/json"})
    problem = assert_problem(response, 422, "validation-error", "Request validation failed")
    assert problem["errors"] == [
        {"location": ["body"], "message": "Field required", "code": "missing"}
    ]


def test_malformed_json_is_a_400_problem(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/items", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400, "malformed-json", "Malformed JSON")


def test_a_failure_is_a_500_problem_without_its_trace_and_is_logged(
    client: httpx.Client, service: Service
) -> None:
    response = client.get("/api/v1/boom", headers={"X-Request-ID": "boom-1"})
    problem = assert_problem(response, 500, "internal-error", "Internal server error")
    assert "secret-internal-detail" not in response.text
    assert problem["request_id"] == "boom-1"
    logged = [
        line
        for line in service.log_lines()
        if line["message"] == "unhandled exception" and field(line, "http.request.id") == "boom-1"
    ]
    assert len(logged) == 1
    assert "secret-internal-detail" in field(logged[0], "error.stack_trace")


# --- health and metrics ----------------------------------------------------------------


def test_livez_answers(client: httpx.Client) -> None:
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_readyz_runs_the_readiness_checks(client: httpx.Client, service: Service) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"contract": "ok"}}
    service.unready_file.touch()
    try:
        problem = assert_problem(client.get("/readyz"), 503, "not-ready", "Not ready")
        assert problem["checks"] == {"contract": "failing"}
    finally:
        service.unready_file.unlink()
    assert client.get("/readyz").status_code == 200


def test_metrics_have_the_same_names_and_labels(client: httpx.Client, minter: TokenMinter) -> None:
    assert client.get("/api/v1/items/7", headers=_bearer(minter.mint())).status_code == 200
    assert client.get("/api/v1/nowhere").status_code == 404
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for line in (
        'flotilla_http_requests_total{method="GET",route="/api/v1/items/{item_id}",'
        'service="contract",status="200"}',
        'flotilla_http_requests_total{method="GET",route="<unmatched>",'
        'service="contract",status="404"}',
        'flotilla_http_request_duration_seconds_bucket{le="0.0005",method="GET",'
        'route="/api/v1/items/{item_id}",service="contract"}',
        'flotilla_http_requests_in_flight{service="contract"}',
    ):
        assert line in text, line


# --- the OpenAPI document -------------------------------------------------------------


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    name = schema["$ref"].removeprefix("#/components/schemas/")
    return document["components"]["schemas"][name]


def test_the_openapi_document_lists_what_fastapis_lists(client: httpx.Client) -> None:
    # FastAPI's document of the same service is the reference.
    reference = build_fastapi(ContractSettings(service_name="contract")).openapi()
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "contract"
    # The same operations; the kit's routes and the document itself hidden alike.
    assert _operations(document) == _operations(reference)
    paths = document["paths"]
    ref_paths = reference["paths"]
    # The POST's body: the same schema, under the same name.
    add, ref_add = paths["/api/v1/items"]["post"], ref_paths["/api/v1/items"]["post"]
    body = add["requestBody"]["content"]["application/json"]["schema"]
    ref_body = ref_add["requestBody"]["content"]["application/json"]["schema"]
    assert body == ref_body == {"$ref": "#/components/schemas/Item"}
    assert _resolved(document, body) == _resolved(reference, ref_body)
    assert "201" in add["responses"]
    # Path parameters as FastAPI's (the kit's text rule as their pattern).
    item = paths["/api/v1/items/{item_id}"]["get"]
    assert item["parameters"] == ref_paths["/api/v1/items/{item_id}"]["get"]["parameters"]
    # Errors as the kit's problem, the schema named and written as FastAPI's, so the
    # gateway's merge shares it.
    schemas, ref_schemas = document["components"]["schemas"], reference["components"]["schemas"]
    assert schemas["Problem"] == ref_schemas["Problem"]
    problem = {"$ref": "#/components/schemas/Problem"}
    answers = paths["/api/v1/public"]["get"]["responses"]
    assert answers["422"]["content"][PROBLEM_CONTENT_TYPE]["schema"] == problem


# --- request id and trace context -----------------------------------------------------


def test_the_request_id_is_echoed_and_on_the_log_line(
    client: httpx.Client, service: Service
) -> None:
    response = client.get("/api/v1/public", headers={"X-Request-ID": "contract-rid-1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "contract-rid-1"
    assert response.json()["request_id"] == "contract-rid-1"
    lines = [line for line in service.log_lines() if line["message"] == "contract route"]
    assert field(lines[-1], "http.request.id") == "contract-rid-1"
    assert lines[-1]["service"]["name"] == "contract"


def test_an_unusable_request_id_is_replaced(client: httpx.Client) -> None:
    response = client.get("/api/v1/public", headers={"X-Request-ID": "bad id\twith tab"})
    made = response.headers["x-request-id"]
    assert made != "bad id\twith tab"
    assert response.json()["request_id"] == made


def test_a_sampled_traceparent_is_the_parent_of_the_request_span(
    client: httpx.Client, service: Service
) -> None:
    sent = f"00-{_TRACE_ID}-{_PARENT_SPAN}-01"
    response = client.get("/api/v1/public", headers={"traceparent": sent})
    onward = response.json()["traceparent"]
    _, trace_id, span_id, flags = onward.split("-")
    assert (trace_id, flags) == (_TRACE_ID, "01")  # what an outgoing call carries on
    assert span_id != _PARENT_SPAN
    line = [line for line in service.log_lines() if line["message"] == "contract route"][-1]
    assert line["trace"]["id"] == _TRACE_ID
    span = _wait_for_span(service, lambda s: s["span_id"] == span_id)
    assert span["trace_id"] == _TRACE_ID
    assert span["parent_span_id"] == _PARENT_SPAN
    assert span["name"] == "GET /api/v1/public"
    assert span["kind"] == "SERVER"


def test_an_unsampled_traceparent_goes_on_unsampled(client: httpx.Client) -> None:
    sent = f"00-{_TRACE_ID}-{_PARENT_SPAN}-00"
    onward = client.get("/api/v1/public", headers={"traceparent": sent}).json()["traceparent"]
    _, trace_id, span_id, flags = onward.split("-")
    assert (trace_id, flags) == (_TRACE_ID, "00")
    assert span_id != _PARENT_SPAN


def _wait_for_span(
    service: Service, wanted: Callable[[dict[str, object]], bool]
) -> dict[str, object]:
    # Spans are exported in batches (FLOTILLA_TRACE_EXPORT_DELAY_S=0.1): the file is
    # written a moment after the answer, and only the file tells.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [span for span in service.spans() if wanted(span)]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no such span in {service.traces_dir}: {service.spans()}")


# --- tokens and permissions ----------------------------------------------------------


def test_no_token_is_a_401_problem(client: httpx.Client) -> None:
    response = client.get("/api/v1/items/7")
    assert_problem(response, 401, "unauthenticated", "Authentication required")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("attack", sorted(JWT_ATTACKS))
def test_every_jwt_attack_is_a_401_problem(
    client: httpx.Client, minter: TokenMinter, attack: str
) -> None:
    response = client.get("/api/v1/items/7", headers=_bearer(JWT_ATTACKS[attack](minter)))
    assert_problem(response, 401, "unauthenticated", "Authentication required")


def test_a_caller_without_the_permission_is_a_403_problem(
    client: httpx.Client, minter: TokenMinter
) -> None:
    response = client.get("/api/v1/items/7", headers=_bearer(minter.mint(roles=["load-test"])))
    problem = assert_problem(response, 403, "forbidden", "Forbidden")
    assert "orders:read" in str(problem["detail"])


def test_a_caller_with_the_permission_is_served(client: httpx.Client, minter: TokenMinter) -> None:
    token = minter.mint("alice", roles=["customer"])
    for _ in range(2):  # verified, then from the verifier's cache
        response = client.get("/api/v1/items/7", headers=_bearer(token))
        assert response.status_code == 200, response.text
        assert response.json() == {"item_id": "7", "subject": "alice"}


def test_a_revoked_session_is_refused_and_another_is_not(
    client: httpx.Client, minter: TokenMinter
) -> None:
    revoked = client.get("/api/v1/items/7", headers=_bearer(minter.mint(sid=REVOKED_SESSION)))
    assert_problem(revoked, 401, "unauthenticated", "Authentication required")
    kept = client.get("/api/v1/items/7", headers=_bearer(minter.mint(sid="another-session")))
    assert kept.status_code == 200, kept.text


# --- transport -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_mutual_tls_from_the_tls_settings(kind: str, tmp_path: Path, key_server: KeyServer) -> None:
    service = start_service(kind, tmp_path, key_server, tls=True)
    try:
        assert service.client_tls is not None
        with httpx.Client(base_url=service.url, verify=service.client_tls) as peer:
            assert peer.get("/api/v1/public").status_code == 200
        ca_only = client_context(tmp_path / "pki" / "ca.pem")
        with (
            httpx.Client(base_url=service.url, verify=ca_only) as stranger,
            pytest.raises(httpx.TransportError),
        ):
            stranger.get("/api/v1/public")  # no client certificate: refused
    finally:
        service.stop()


# --- stopping ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_sigterm_drains_then_stops(kind: str, tmp_path: Path, key_server: KeyServer) -> None:
    service = start_service(kind, tmp_path, key_server, drain_s=2.0)
    try:
        with httpx.Client(base_url=service.url, timeout=10.0) as http:
            assert http.get("/readyz").status_code == 200
            service.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while http.get("/readyz").status_code != 503:  # the signal arrives a moment later
                assert time.monotonic() < deadline, "never drained"
                time.sleep(0.02)
            assert_problem(http.get("/readyz"), 503, "draining", "Draining")
            assert http.get("/api/v1/public").status_code == 200  # still served
        assert service.process.wait(timeout=20) == 0
    finally:
        service.stop()
    logged = [
        json.loads(line)
        for line in service.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(line["message"] == "draining" for line in logged)
