"""Every error leaves a service as problem+json, never as a stack trace."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from flotilla_kit.app import create_service_app
from flotilla_kit.content_types import require_json
from flotilla_kit.problems import Problem
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing import TokenMinter

router = APIRouter()


class Item(BaseModel):
    name: str
    count: int


@router.post("/items", dependencies=[Depends(require_json)])
async def create(item: Item) -> Item:
    return item


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internals")


@router.get("/teapot")
async def teapot() -> None:
    raise Problem(418, "teapot", "I'm a teapot", "Short and stout.", kettle="no")


async def _failing() -> None:
    raise ConnectionError("database down")


@pytest.fixture
async def client(tokens: TokenMinter) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServiceSettings(service_name="demo", max_body_bytes=1000)
    app = create_service_app(
        settings,
        title="demo",
        routers=[router],
        readiness={"db": _failing},
        verifier=tokens.verifier(),
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def _is_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["type"] == f"https://flotilla.dev/problems/{slug}"
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_validation_errors_name_the_field(client: httpx.AsyncClient) -> None:
    body = _is_problem(await client.post("/items", json={"name": "x"}), 422, "validation-error")
    assert body["errors"] == [
        {"location": ["body", "count"], "message": "Field required", "code": "missing"}
    ]


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/items", content=b"{nope", headers={"content-type": "application/json"}
    )
    _is_problem(response, 400, "malformed-json")


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    _is_problem(await client.post("/items", data={"name": "x"}), 415, "unsupported-media-type")


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    _is_problem(await client.get("/nowhere"), 404, "not-found")
    _is_problem(await client.delete("/items"), 405, "method-not-allowed")


async def test_a_trailing_slash_is_another_path_not_a_redirect(client: httpx.AsyncClient) -> None:
    # `PATCH /products/` (an empty product id) was redirected to `/products`, where a
    # client that follows redirects got a 405 that the operation does not document.
    _is_problem(await client.post("/items/", json={"name": "x", "count": 1}), 404, "not-found")


async def test_an_unexpected_exception_is_500_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom")
    _is_problem(response, 500, "internal-error")
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text


async def test_a_problem_keeps_its_extensions(client: httpx.AsyncClient) -> None:
    body = _is_problem(await client.get("/teapot"), 418, "teapot")
    assert body["kettle"] == "no"
    assert body["detail"] == "Short and stout."


async def test_bodies_over_the_limit_are_413_even_when_chunked(client: httpx.AsyncClient) -> None:
    big = b'{"name": "' + b"x" * 2000 + b'", "count": 1}'
    _is_problem(
        await client.post("/items", content=big, headers={"content-type": "application/json"}),
        413,
        "payload-too-large",
    )

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield big[:600]

    response = await client.post(
        "/items", content=chunks(), headers={"content-type": "application/json"}
    )
    _is_problem(response, 413, "payload-too-large")


async def test_readiness_reports_the_failing_dependency(client: httpx.AsyncClient) -> None:
    body = _is_problem(await client.get("/readyz"), 503, "not-ready")
    assert body["checks"] == {"db": "failing"}
    assert (await client.get("/livez")).status_code == 200


async def test_openapi_documents_the_problem_schema(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "Problem" in schema["components"]["schemas"]
