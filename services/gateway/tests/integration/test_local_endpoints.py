"""Endpoints the gateway answers itself: readiness, metrics, the merged OpenAPI, docs."""

from __future__ import annotations

import re
from enum import Enum

from fastapi import APIRouter
from pydantic import BaseModel

from flotilla_gateway.routes import AUTHENTICATED, POLICY
from flotilla_kit.testing import TokenMinter

from .harness import Stack

# Two different enums that FastAPI names `Status` in each service's document.
AuthStatus = Enum("Status", {"active": "active", "locked": "locked"}, type=str)  # type: ignore[misc]
AccountStatus = Enum("Status", {"open": "open", "closed": "closed"}, type=str)  # type: ignore[misc]


class Credentials(BaseModel):
    username: str
    password: str


class Token(BaseModel):
    access_token: str
    status: AuthStatus


class Account(BaseModel):
    id: str
    status: AccountStatus


def auth_router() -> APIRouter:
    router = APIRouter()

    @router.post("/api/v1/auth/token")
    async def token(credentials: Credentials) -> Token:
        return Token(access_token=credentials.username, status="active")

    @router.get("/internal/stats")
    async def stats() -> dict[str, int]:
        return {}

    @router.get("/api/v1/auth/debug")
    async def debug() -> dict[str, int]:
        return {}

    return router


def accounts_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/accounts/{account_id}")
    async def account(account_id: str) -> Account:
        return Account(id=account_id, status="open")

    @router.delete("/api/v1/accounts/{account_id}")
    async def close(account_id: str) -> Account:
        return Account(id=account_id, status="closed")

    return router


async def test_readyz_lists_services_when_each_has_a_healthy_instance(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.upstream("auth")
    await stack.upstream("accounts")
    await stack.upstream("payments")
    await stack.upstream("inventory")
    await stack.upstream("orders")
    await stack.upstream("billing")
    await stack.upstream("web")
    await stack.start_gateway()
    async with stack.client() as client:
        live = await client.get("/livez")
        ready = await client.get("/readyz")
    assert live.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "services": {
            "auth": {"healthy": 2, "instances": 2},
            "accounts": {"healthy": 1, "instances": 1},
            "payments": {"healthy": 1, "instances": 1},
            "inventory": {"healthy": 1, "instances": 1},
            "orders": {"healthy": 1, "instances": 1},
            "billing": {"healthy": 1, "instances": 1},
            "web": {"healthy": 1, "instances": 1},
        },
    }


async def test_readyz_stays_ready_and_names_the_services_without_a_healthy_instance(
    stack: Stack,
) -> None:
    # Every gateway sees the same upstreams: were it unready here, a probe would take every
    # gateway out of rotation, and the routes that still work with them.
    await stack.upstream("auth")
    await stack.start_gateway()
    async with stack.client() as client:
        live = await client.get("/livez")
        ready = await client.get("/readyz")
        token = await client.post("/api/v1/auth/token", json={"username": "a", "password": "b"})
    assert live.status_code == 200
    assert ready.status_code == 200
    assert ready.headers["content-type"] == "application/json"
    body = ready.json()
    assert body["status"] == "ready"
    assert body["unavailable"] == {
        "services": ["accounts", "payments", "inventory", "orders", "billing", "web"],
        "shards": {},
    }
    assert body["services"]["orders"] == {"healthy": 0, "instances": 0}
    assert token.status_code == 200  # the API is up for what has an instance


async def test_metrics_count_requests_by_route_and_status(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway()
    async with stack.client() as client:
        for _ in range(3):
            await client.post("/api/v1/auth/token", json={})
        await client.get("/api/v1/accounts/1")  # 401
        await client.get("/nowhere")
        await client.delete("/api/v1/accounts")  # 405
        metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    lines = metrics.text.splitlines()
    assert 'flotilla_gateway_requests_total{route="/api/v1/auth/token",status="200"} 3.0' in lines
    assert (
        'flotilla_gateway_requests_total{route="/api/v1/accounts/{account_id}",status="401"} 1.0'
        in lines
    )
    assert 'flotilla_gateway_requests_total{route="<unmatched>",status="404"} 1.0' in lines
    assert 'flotilla_gateway_requests_total{route="<unmatched>",status="405"} 1.0' in lines
    assert (
        'flotilla_gateway_request_duration_seconds_count{route="/api/v1/auth/token"} 3.0' in lines
    )
    # An unsharded service's instances have an empty shard label (to Prometheus: none).
    assert (
        'flotilla_gateway_upstream_in_flight{instance="auth-0",service="auth",shard=""} 0.0'
        in lines
    )
    assert (
        'flotilla_gateway_upstream_healthy{instance="auth-0",service="auth",shard=""} 1.0' in lines
    )


async def test_openapi_merges_the_services_and_follows_instance_changes(stack: Stack) -> None:
    await stack.upstream("auth", router=auth_router())
    await stack.start_gateway()
    async with stack.client() as client:
        only_auth = (await client.get("/openapi.json")).json()
        # Only operations in the policy: not `/internal/stats`, not `/api/v1/auth/debug`.
        assert list(only_auth["paths"]) == ["/api/v1/auth/token"]

        await stack.upstream("accounts", router=accounts_router())
        await stack.wait_until(lambda: len(list(stack.registry.instances())) == 2)
        await stack.wait_until(lambda: all(i.healthy for i in stack.registry.instances()))
        response = await client.get("/openapi.json")
        docs = await client.get("/docs")
        assets = {
            path: await client.get(path)
            for path in (
                "/docs/favicon-32x32.png",
                "/docs/swagger-ui.css",
                "/docs/swagger-ui-bundle.js",
                "/docs/start.js",
            )
        }

    assert response.status_code == 200
    merged = response.json()
    assert merged["info"]["title"] == "Flotilla API"
    assert merged["servers"] == [{"url": "/"}]
    assert set(merged["paths"]) == {"/api/v1/auth/token", "/api/v1/accounts/{account_id}"}
    # DELETE is documented by the service but not in the policy.
    assert set(merged["paths"]["/api/v1/accounts/{account_id}"]) == {"get"}
    schemas = merged["components"]["schemas"]
    # Different `Status` enums: one per service; FastAPI's own schemas are identical: shared.
    assert schemas["auth_Status"]["enum"] == ["active", "locked"]
    assert schemas["accounts_Status"]["enum"] == ["open", "closed"]
    assert "Status" not in schemas
    assert schemas["Token"]["properties"]["status"] == {"$ref": "#/components/schemas/auth_Status"}
    assert schemas["Account"]["properties"]["status"] == {
        "$ref": "#/components/schemas/accounts_Status"
    }
    assert {"Credentials", "HTTPValidationError", "ValidationError"} <= set(schemas)

    assert docs.status_code == 200
    assert docs.headers["content-type"] == "text/html; charset=utf-8"
    # Everything the page loads comes from the gateway: no CDN, works offline.
    assert "http" not in docs.text
    assert re.findall(r'(?:src|href)="([^"]+)"', docs.text) == list(assets)
    assert {path: r.status_code for path, r in assets.items()} == dict.fromkeys(assets, 200)
    assert assets["/docs/swagger-ui.css"].headers["content-type"] == "text/css; charset=utf-8"
    bundle = assets["/docs/swagger-ui-bundle.js"]
    assert bundle.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "SwaggerUIBundle" in bundle.text
    assert assets["/docs/favicon-32x32.png"].headers["content-type"] == "image/png"
    assert '"/openapi.json"' in assets["/docs/start.js"].text


async def test_the_policy_is_published_as_data(stack: Stack) -> None:
    auth = await stack.upstream("auth")
    await stack.start_gateway()
    async with stack.client() as client:
        response = await client.get("/policy.json")
        head = await client.head("/policy.json")
        post = await client.post("/policy.json", json=[])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [
        {
            "method": e.method,
            "path": e.path,
            "service": e.service,
            "access": e.access,
            "shard_by": e.shard_by,
            "page": e.page,
        }
        for e in POLICY
    ]
    assert {
        "method": "GET",
        "path": "/api/v1/auth/me",
        "service": "auth",
        "access": AUTHENTICATED,
        "shard_by": None,
        "page": False,
    } in response.json()
    assert {
        "method": "GET",
        "path": "/api/v1/accounts/{account_id}/entries",
        "service": "accounts",
        "access": "accounts:read",
        "shard_by": "account_id",
        "page": False,
    } in response.json()
    assert {
        "method": "GET",
        "path": "/login",
        "service": "web",
        "access": "public",
        "shard_by": None,
        "page": True,
    } in response.json()
    assert head.status_code == 200
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"
    assert auth.proxied == []  # answered by the gateway itself


async def test_system_instances_shows_each_instance_with_its_counts(
    stack: Stack, tokens: TokenMinter
) -> None:
    """The operator console's picture: this gateway's view of every instance."""
    await stack.upstream("auth")
    inventory = await stack.upstream("inventory")
    failing = await stack.upstream("inventory")
    await stack.start_gateway()
    failing.status = 500
    support = {"Authorization": f"Bearer {tokens.mint('s-1', ['support'])}"}
    async with stack.client() as client:
        for _ in range(6):
            await client.get("/api/v1/products")
        answer = await client.get("/api/v1/system/instances", headers=support)
        anonymous = await client.get("/api/v1/system/instances")
    assert anonymous.status_code == 401
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["gateway"] == "gateway-0"
    services = {service["name"]: service for service in body["services"]}
    assert services["auth"]["instances"][0]["requests"] == 0
    shop = {i["name"]: i for i in services["inventory"]["instances"]}
    assert set(shop) == {inventory.name, failing.name}
    ok, bad = shop[inventory.name], shop[failing.name]
    assert ok["requests"] + bad["requests"] == 6
    assert bad["errors"] == bad["requests"] > 0
    assert ok["errors"] == 0
    for instance in (ok, bad):
        # Cumulative buckets, the last as many as the requests the instance answered.
        counts = [count for _, count in instance["buckets"]]
        assert counts == sorted(counts)
        assert counts[-1] <= instance["requests"]
        assert instance["duration_sum_s"] >= 0
        assert instance["shard"] is None
        assert instance["url"].startswith("http://127.0.0.1:")
