"""Security headers on every response, each exactly once; no-store on auth; no CORS at all."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from flotilla_kit.testing import TokenMinter

from .harness import Stack

CSP = "default-src 'none'; frame-ancestors 'none'"
# Pages (the web service's, the Swagger UI): the gateway's own scripts and styles,
# nothing inline, nothing from elsewhere.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HSTS = "max-age=63072000; includeSubDomains"
ALWAYS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
# What a careless service might send: each must be replaced or dropped by the gateway.
NOISY = {
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "sniff-away",
    "Referrer-Policy": "unsafe-url",
    "Content-Security-Policy": "default-src *",
    "Strict-Transport-Security": "max-age=1",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Expose-Headers": "x-secret",
    "X-Service": "kept",
}

Fields = list[tuple[str, str]]


def noisy_auth() -> APIRouter:
    router = APIRouter()

    @router.post("/api/v1/auth/token")
    async def token() -> JSONResponse:
        headers = {**NOISY, "Cache-Control": "public, max-age=600"}
        return JSONResponse({"access_token": "t"}, headers=headers)

    return router


def noisy_accounts() -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/accounts/{account_id}")
    async def account(account_id: str) -> JSONResponse:
        headers = {**NOISY, "Cache-Control": "private, max-age=30"}
        return JSONResponse({"id": account_id}, headers=headers)

    return router


def fields_of(response: httpx.Response) -> Fields:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers.raw]


def values(fields: Fields, name: str) -> list[str]:
    return [value for key, value in fields if key == name]


def insecure(fields: Fields, *, csp: str = CSP, hsts: bool = False) -> list[str]:
    """What is wrong with the security headers of one response (empty: nothing)."""
    wrong: list[str] = []
    expected = {**ALWAYS, "content-security-policy": csp}
    if hsts:
        expected["strict-transport-security"] = HSTS
    for name, value in expected.items():
        if values(fields, name) != [value]:
            wrong.append(f"{name}: {values(fields, name)}")
    if not hsts and values(fields, "strict-transport-security"):
        wrong.append("HSTS without TLS")
    wrong += [f"CORS field {key}" for key, _ in fields if key.startswith("access-control-")]
    return wrong


async def raw_exchange(stack: Stack, request: bytes) -> tuple[int, Fields]:
    """Send bytes, read one response head: for requests httpx would not send as they are."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.gateway_port)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in lines if line)
    ]
    return int(status_line.split(" ")[1]), fields


async def test_every_kind_of_response_carries_the_headers_once(
    stack: Stack, tokens: TokenMinter
) -> None:
    await stack.upstream("auth", router=noisy_auth())
    await stack.upstream("accounts", router=noisy_accounts())
    for service in ("payments", "inventory", "orders", "web"):  # so /readyz answers 200 too
        await stack.upstream(service)
    await stack.start_gateway(max_body_bytes=100)
    customer = {"Authorization": f"Bearer {tokens.mint('c', ['customer'])}"}
    async with stack.client() as client:
        responses = {
            # proxied
            "token": await client.post("/api/v1/auth/token", json={}),
            "account": await client.get("/api/v1/accounts/acc-1", headers=customer),
            "me": await client.get("/api/v1/auth/me", headers=customer),
            "jwks": await client.get("/.well-known/jwks.json"),
            "head": await client.head("/api/v1/accounts/acc-1", headers=customer),
            # local
            "livez": await client.get("/livez"),
            "readyz": await client.get("/readyz"),
            "metrics": await client.get("/metrics"),
            "policy": await client.get("/policy.json"),
            "openapi": await client.get("/openapi.json"),
            # errors
            "404": await client.get("/nowhere"),
            "405": await client.delete("/api/v1/accounts"),
            "405 local": await client.post("/livez"),
            "401": await client.get("/api/v1/accounts"),
            "403": await client.post("/api/v1/accounts/a/deposits", headers=customer, json={}),
            "400": await client.get("/api/v1/accounts/%2e%2e"),
        }
        docs = await client.get("/docs")
        page = await client.get("/login")
    status, too_large = await raw_exchange(
        stack, b"POST /api/v1/auth/token HTTP/1.1\r\nHost: gw\r\nContent-Length: 101\r\n\r\n"
    )

    assert status == 413
    problems = {name: insecure(fields_of(r)) for name, r in responses.items()}
    problems["413"] = insecure(too_large)
    problems["docs"] = insecure(fields_of(docs), csp=DOCS_CSP)
    problems["page"] = insecure(fields_of(page), csp=DOCS_CSP)
    assert {name: wrong for name, wrong in problems.items() if wrong} == {}
    assert page.status_code == 200
    assert [r.status_code for r in responses.values()] == [200] * 10 + [
        404,
        405,
        405,
        401,
        403,
        400,
    ]

    token, account = fields_of(responses["token"]), fields_of(responses["account"])
    # Auth answers are never stored, whatever the service said; others keep theirs.
    assert values(token, "cache-control") == ["no-store"]
    assert values(fields_of(responses["me"]), "cache-control") == ["no-store"]
    assert values(account, "cache-control") == ["private, max-age=30"]
    assert values(fields_of(responses["jwks"]), "cache-control") == ["public, max-age=300"]
    # The rest of what the service says passes through.
    assert values(token, "x-service") == values(account, "x-service") == ["kept"]


async def test_hsts_is_sent_over_tls_only_and_replaces_the_services_own(
    stack: Stack, tokens: TokenMinter
) -> None:
    await stack.upstream("auth", tls=True, router=noisy_auth())
    await stack.upstream("accounts", tls=True, router=noisy_accounts())
    await stack.start_gateway(tls=True)
    async with stack.client() as client:
        responses = {
            "proxied": await client.post("/api/v1/auth/token", json={}),
            "local": await client.get("/livez"),
            "error": await client.get("/nowhere"),
            "401": await client.get("/api/v1/accounts/acc-1"),
        }
        docs = await client.get("/docs")
    problems = {name: insecure(fields_of(r), hsts=True) for name, r in responses.items()}
    problems["docs"] = insecure(fields_of(docs), csp=DOCS_CSP, hsts=True)
    assert {name: wrong for name, wrong in problems.items() if wrong} == {}


async def test_cors_is_off(stack: Stack, tokens: TokenMinter) -> None:
    await stack.upstream("auth")
    accounts = await stack.upstream("accounts", router=noisy_accounts())
    await stack.start_gateway()
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    customer = {"Authorization": f"Bearer {tokens.mint('c', ['customer'])}"}
    async with stack.client() as client:
        listed = await client.options("/api/v1/accounts", headers=preflight)
        unlisted = await client.options("/api/v1/payments", headers=preflight)
        simple = await client.get(
            "/api/v1/accounts/acc-1", headers={**customer, "Origin": "https://evil.example"}
        )
    assert listed.status_code == 405
    assert listed.headers["allow"] == "GET, HEAD, POST"
    assert listed.headers["content-type"] == "application/problem+json"
    assert unlisted.status_code == 404
    assert simple.status_code == 200
    for response in (listed, unlisted, simple):
        assert not [k for k, _ in fields_of(response) if k.startswith("access-control-")]
    assert accounts.proxied == ["GET /api/v1/accounts/acc-1"]  # no preflight reached it
