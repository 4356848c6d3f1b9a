"""Requests through the gateway to real upstream servers: what each side sees."""

from __future__ import annotations

import json
import re

import structlog

from flotilla_kit.problems import problem_type
from flotilla_kit.testing import TokenMinter

from .harness import Stack, header_values

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


async def test_get_is_forwarded_with_ids_and_without_hop_by_hop_or_spoofed_fields(
    stack: Stack,
) -> None:
    await stack.upstream("auth")
    await stack.start_gateway()
    async with stack.client() as client:
        response = await client.get(
            "/api/v1/auth/whoami?verbose=1&x=%2F",
            headers={
                "X-Request-Id": "client-req-42",
                "traceparent": PARENT,
                "tracestate": "vendor=1",
                "X-User-Id": "admin",
                "X-User-Roles": "admin",
                "X-Forwarded-For": "6.6.6.6",
                "X-Forwarded-Host": "evil.example",
                "Connection": "keep-alive, X-Hop",
                "X-Hop": "secret",
                "Keep-Alive": "timeout=99",
                "TE": "trailers",
                "Upgrade": "h2c",
                "X-Custom": "kept",
            },
        )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "client-req-42"
    assert response.headers["x-instance"] == "auth-0"
    assert "server" not in response.headers  # the upstream's software is not announced
    seen = response.json()
    assert seen["path"] == "/api/v1/auth/whoami"
    assert seen["query"] == "verbose=1&x=%2F"
    assert header_values(seen, "x-request-id") == ["client-req-42"]
    (traceparent,) = header_values(seen, "traceparent")
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert span_id != "b7ad6b7169203331"  # a new span for the upstream hop
    assert header_values(seen, "tracestate") == ["vendor=1"]
    assert header_values(seen, "x-forwarded-for") == ["127.0.0.1"]
    assert header_values(seen, "x-forwarded-proto") == ["http"]
    assert header_values(seen, "x-forwarded-host") == [f"127.0.0.1:{stack.gateway_port}"]
    assert header_values(seen, "x-custom") == ["kept"]
    received = {name.lower() for name, _ in seen["headers"]}
    assert not {n for n in received if n.startswith("x-user-")}
    assert not received & {"connection", "keep-alive", "te", "upgrade", "x-hop"}


async def test_post_body_is_forwarded_and_a_request_id_generated(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway()
    payload = {"username": "ada", "password": "correct horse battery staple"}
    async with stack.client() as client:
        response = await client.post(
            "/api/v1/auth/login",
            json=payload,
            headers={"X-Request-Id": "bad id with spaces", "traceparent": "00-zz-broken"},
        )
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert HEX32.match(request_id)
    seen = response.json()
    assert seen["method"] == "POST"
    assert json.loads(seen["body"]) == payload
    assert header_values(seen, "content-type") == ["application/json"]
    assert header_values(seen, "content-length") == [str(len(seen["body"]))]
    assert header_values(seen, "x-request-id") == [request_id]
    (traceparent,) = header_values(seen, "traceparent")
    assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$", traceparent)


async def test_protected_routes_need_a_valid_token(stack: Stack, tokens: TokenMinter) -> None:
    await stack.upstream("auth")
    await stack.upstream("accounts")
    await stack.start_gateway()
    valid = tokens.mint("user-7")
    tampered = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")
    async with stack.client() as client:
        missing = await client.get("/api/v1/accounts/acc-1")
        wrong_scheme = await client.get(
            "/api/v1/accounts/acc-1", headers={"Authorization": f"Basic {valid}"}
        )
        bad_signature = await client.get(
            "/api/v1/accounts/acc-1", headers={"Authorization": f"Bearer {tampered}"}
        )
        expired = await client.get(
            "/api/v1/accounts",
            headers={"Authorization": f"Bearer {tokens.mint('user-7', ttl_s=-120)}"},
        )
        ok = await client.get(
            "/api/v1/accounts/acc-1", headers={"Authorization": f"Bearer {valid}"}
        )
        ok_root = await client.get("/api/v1/accounts", headers={"Authorization": f"bearer {valid}"})

    for refused in (missing, wrong_scheme, bad_signature, expired):
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"] == 'Bearer realm="flotilla"'
        problem = refused.json()
        assert problem["type"] == problem_type("unauthenticated")
        assert problem["status"] == 401
        assert problem["request_id"] == refused.headers["x-request-id"]
    assert ok.status_code == 200
    assert ok_root.status_code == 200
    # Services verify the token again, so it is passed on unchanged.
    assert header_values(ok.json(), "authorization") == [f"Bearer {valid}"]


async def test_public_routes_and_unknown_paths(stack: Stack, tokens: TokenMinter) -> None:
    await stack.upstream("auth")
    await stack.upstream("accounts")
    await stack.start_gateway()
    async with stack.client() as client:
        public = await client.post("/api/v1/auth/token", json={"username": "ada"})
        jwks = await client.get("/.well-known/jwks.json")
        unknown = await client.get("/api/v1/payments/1")
        lookalike = await client.get(
            "/api/v1/accountsX", headers={"Authorization": f"Bearer {tokens.mint()}"}
        )
        dotted = await client.get("/api/v1/auth/%2e%2e/accounts")
    assert public.status_code == 200
    assert jwks.status_code == 200
    assert jwks.json() == tokens.jwks
    for refused, status in ((unknown, 404), (lookalike, 404), (dotted, 400)):
        assert refused.status_code == status
        assert refused.headers["content-type"] == "application/problem+json"
        body = refused.json()
        assert body["status"] == status
        assert set(body) == {"type", "title", "status", "detail", "request_id"}


async def test_one_access_log_line_per_request(stack: Stack, tokens: TokenMinter) -> None:
    await stack.upstream("auth")
    await stack.upstream("accounts")
    await stack.start_gateway()
    async with stack.client() as client:
        with structlog.testing.capture_logs() as logs:
            await client.get(
                "/api/v1/accounts/a1",
                headers={
                    "Authorization": f"Bearer {tokens.mint('user-9')}",
                    "X-Request-Id": "log-me",
                    "traceparent": PARENT,
                },
            )
            await client.get("/livez")  # probes are not logged
    access = [entry for entry in logs if entry["event"] == "request"]
    assert len(access) == 1
    (line,) = access
    # ECS fields, nested as the renderer writes them.
    assert line["http"] == {
        "request": {"method": "GET", "id": "log-me"},
        "response": {"status_code": 200},
    }
    assert line["url"] == {"path": "/api/v1/accounts/a1"}
    assert isinstance(line["event.duration"], int)
    assert line["event.duration"] > 0
    assert line["trace"] == {"id": TRACE_ID}
    assert line["upstream"] == {"instance": "accounts-0"}
    assert line["user"] == {"id": "user-9"}
    assert line["client"] == {"ip": "127.0.0.1"}


async def test_head_keeps_the_upstream_length_and_sends_no_body(stack: Stack) -> None:
    upstream = await stack.upstream("auth")
    await stack.start_gateway()
    async with stack.client() as client:
        heads = [await client.head("/api/v1/auth/thing") for _ in range(2)]
        after = await client.get("/api/v1/auth/thing")
    for head in heads:
        assert head.status_code == 200
        assert head.content == b""
        # The length of the body a GET would have had ("HEAD" is one letter longer).
        assert int(head.headers["content-length"]) == len(after.content) + 1
    assert [seen["method"] for seen in upstream.seen] == ["HEAD", "HEAD", "GET"]
    assert after.status_code == 200


async def test_slow_upstream_gives_504(stack: Stack) -> None:
    upstream = await stack.upstream("auth")
    await stack.start_gateway(upstream_timeout_s=0.2)
    async with stack.client() as client:
        response = await client.get("/api/v1/auth/x/slow")
        upstream.release.set()
        after = await client.get("/api/v1/auth/fast")
    assert response.status_code == 504
    assert response.json()["type"] == problem_type("gateway-timeout")
    assert after.status_code == 200
    assert all(i.in_flight == 0 for i in stack.registry.instances())
