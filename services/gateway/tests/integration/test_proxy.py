"""Requests through the gateway to real upstream servers: what each side sees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flotilla_kit.problems import problem_type
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tracing import install_tracing, uninstall_tracing

from .harness import ECHO_POLICY, Stack, header_values

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


async def test_get_is_forwarded_with_ids_and_without_hop_by_hop_or_spoofed_fields(
    stack: Stack, tokens: TokenMinter
) -> None:
    await stack.upstream("auth")
    await stack.start_gateway()
    token = tokens.mint("user-42", ["customer"])
    async with stack.client() as client:
        response = await client.get(
            "/api/v1/auth/me?verbose=1&x=%2F",
            headers={
                "Authorization": f"Bearer {token}",
                "X-Request-Id": "client-req-42",
                "traceparent": PARENT,
                "tracestate": "vendor=1",
                "X-User-Id": "admin",
                "X-User-Roles": "admin",
                "X-Forwarded-For": "6.6.6.6",
                "X-Forwarded-Host": "evil.example",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Port": "443",
                "Forwarded": "for=6.6.6.6;proto=https",
                "X-Real-IP": "6.6.6.6",
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
    assert seen["path"] == "/api/v1/auth/me"
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
    # Services verify the token again, so it is passed on unchanged.
    assert header_values(seen, "authorization") == [f"Bearer {token}"]
    received = {name.lower() for name, _ in seen["headers"]}
    assert not {n for n in received if n.startswith("x-user-")}
    assert not received & {"forwarded", "x-real-ip", "x-forwarded-port"}
    assert not received & {"connection", "keep-alive", "te", "upgrade", "x-hop"}


async def test_post_body_is_forwarded_and_a_request_id_generated(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway()
    payload = {"username": "ada", "password": "correct horse battery staple"}
    async with stack.client() as client:
        response = await client.post(
            "/api/v1/auth/token",
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
        encoded_slash = await client.get(
            "/api/v1/auth/users/u-1%2Froles%2Fadmin",
            headers={"Authorization": f"Bearer {tokens.mint('s', ['support'])}"},
        )
        internal = await client.get("/internal/v1/revocations")
        unlisted_auth = await client.post("/api/v1/auth/refresh", json={})
    assert public.status_code == 200
    assert jwks.status_code == 200
    assert jwks.json() == tokens.jwks
    for refused, status in (
        (unknown, 404),
        (lookalike, 404),
        (dotted, 400),
        (encoded_slash, 400),
        (internal, 404),
        (unlisted_auth, 404),
    ):
        assert refused.status_code == status
        assert refused.headers["content-type"] == "application/problem+json"
        body = refused.json()
        assert body["status"] == status
        assert set(body) == {"type", "title", "status", "detail", "request_id"}
    assert [u.proxied for u in stack.upstreams] == [
        ["POST /api/v1/auth/token", "GET /.well-known/jwks.json"],
        [],
    ]


async def test_a_listed_path_with_an_unlisted_method_gets_405_with_allow(
    stack: Stack, tokens: TokenMinter
) -> None:
    accounts = await stack.upstream("accounts")
    await stack.start_gateway()
    admin = {"Authorization": f"Bearer {tokens.mint('root', ['admin'])}"}
    async with stack.client() as client:
        delete = await client.delete("/api/v1/accounts/acc-1", headers=admin)
        patch = await client.patch("/api/v1/accounts", headers=admin, json={})
        get_deposits = await client.get("/api/v1/accounts/acc-1/deposits", headers=admin)
    for response, allow in (
        (delete, "GET, HEAD"),
        (patch, "GET, HEAD, POST"),
        (get_deposits, "POST"),
    ):
        assert response.status_code == 405
        assert response.headers["allow"] == allow
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == problem_type("method-not-allowed")
    assert accounts.proxied == []


async def test_a_token_without_the_permission_gets_403(stack: Stack, tokens: TokenMinter) -> None:
    await stack.upstream("auth")  # publishes the keys
    accounts = await stack.upstream("accounts")
    await stack.start_gateway()
    customer = {"Authorization": f"Bearer {tokens.mint('c', ['customer'])}"}
    admin = {"Authorization": f"Bearer {tokens.mint('a', ['admin'])}"}
    path = "/api/v1/accounts/acc-1/deposits"
    async with stack.client() as client:
        # The first sight of a token (verified in a task) and a known one (synchronous).
        first = await client.post(path, headers=customer, json={"amount": "5"})
        again = await client.post(path, headers=customer, json={"amount": "5"})
        allowed = await client.post(path, headers=admin, json={"amount": "5"})
    for refused in (first, again):
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == problem_type("forbidden")
        assert "www-authenticate" not in refused.headers
    assert allowed.status_code == 200
    assert accounts.proxied == [f"POST {path}"]


async def test_one_access_log_line_per_request(
    stack: Stack, tokens: TokenMinter, capsys: pytest.CaptureFixture[str]
) -> None:
    await stack.upstream("auth")
    await stack.upstream("accounts")
    await stack.start_gateway()
    assert stack.gateway is not None
    access_log = stack.gateway.connections.dispatcher.access_log
    async with stack.client() as client:
        capsys.readouterr()
        await client.get(
            "/api/v1/accounts/a1",
            headers={
                "Authorization": f"Bearer {tokens.mint('user-9')}",
                "X-Request-Id": "log-me",
                "traceparent": PARENT,
            },
        )
        await client.get("/livez")  # probes are not logged
        access_log.flush()  # lines are written in batches, off the request path
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    access = [line for line in lines if line.get("message") == "request"]
    assert len(access) == 1
    (line,) = access
    # ECS fields, nested as ecs-logging writes them.
    assert line["log.level"] == "info"
    assert line["service"] == {"name": "gateway", "node": {"name": "gateway-0"}}
    assert line["http"] == {
        "request": {"method": "GET", "id": "log-me"},
        "response": {"status_code": 200},
        "route": "/api/v1/accounts/{account_id}",
    }
    assert line["url"] == {"path": "/api/v1/accounts/a1"}
    assert isinstance(line["event"]["duration"], int)
    assert line["event"]["duration"] > 0
    assert line["trace"] == {"id": TRACE_ID}
    assert line["upstream"] == {"instance": "accounts-0"}
    assert line["user"] == {"id": "user-9"}
    assert line["client"] == {"ip": "127.0.0.1"}


async def test_head_keeps_the_upstream_length_and_sends_no_body(stack: Stack) -> None:
    upstream = await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY)
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
    await stack.start_gateway(policy=ECHO_POLICY, upstream_timeout_s=0.2)
    async with stack.client() as client:
        response = await client.get("/api/v1/auth/x/slow")
        upstream.release.set()
        after = await client.get("/api/v1/auth/fast")
    assert response.status_code == 504
    assert response.json()["type"] == problem_type("gateway-timeout")
    assert after.status_code == 200
    assert all(i.in_flight == 0 for i in stack.registry.instances())


async def test_unsampled_requests_make_no_span_but_a_failed_one_is_recorded(
    stack: Stack, tokens: TokenMinter, tmp_path: Path
) -> None:
    """With a sample ratio of 0 the gateway starts traces unsampled (flag 00 upstream) and
    records nothing for them, except a request that failed: errors are always kept."""
    settings = ServiceSettings(
        service_name="gateway", var_dir=tmp_path, trace_sample_ratio=0.0,
        trace_export_delay_s=0.05,
    )  # fmt: skip
    active = install_tracing(settings, instance="gateway-0")
    assert active is not None
    try:
        upstream = await stack.upstream("auth")
        gateway = await stack.start_gateway()
        headers = {"Authorization": f"Bearer {tokens.mint('user-1', ['customer'])}"}
        async with stack.client() as client:
            fine = await client.get("/api/v1/auth/me", headers=headers)
            upstream.status = 503
            failed = await client.get("/api/v1/auth/me", headers=headers)
        assert (fine.status_code, failed.status_code) == (200, 503)
        flags = [header_values(seen, "traceparent")[0][-2:] for seen in upstream.seen]
        assert flags == ["00", "00"]  # nor do the services record these traces
        dispatcher = gateway.connections.dispatcher
        assert dispatcher.spans is not None
        dispatcher.spans.flush()
        active.processor.force_flush()
        lines = (tmp_path / "traces" / "gateway-0.jsonl").read_text().splitlines()
        (span,) = [json.loads(line) for line in lines]
        assert span["attributes"]["http.response.status_code"] == 503
        assert span["status"] == "ERROR"
        forwarded = header_values(upstream.seen[1], "traceparent")[0].split("-")
        assert (span["trace_id"], span["span_id"]) == (forwarded[1], forwarded[2])
    finally:
        uninstall_tracing()


async def test_behind_a_trusted_proxy_the_client_is_its_forwarded_address(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(trusted_proxies=["127.0.0.0/8"])
    async with stack.client() as client:
        one_hop = await client.post(
            "/api/v1/auth/token", json={}, headers={"X-Forwarded-For": "203.0.113.7"}
        )
        spoofed = await client.post(
            "/api/v1/auth/token",
            json={},
            headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.8, 127.0.0.5"},
        )
        direct = await client.post("/api/v1/auth/token", json={})
    assert header_values(one_hop.json(), "x-forwarded-for") == ["203.0.113.7"]
    # Our proxies (127.0.0.5) are skipped; what the client claimed before them is not read.
    assert header_values(spoofed.json(), "x-forwarded-for") == ["203.0.113.8"]
    assert header_values(direct.json(), "x-forwarded-for") == ["127.0.0.1"]


async def test_from_an_untrusted_peer_x_forwarded_for_is_ignored(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(trusted_proxies=["10.0.0.0/8"])
    async with stack.client() as client:
        response = await client.post(
            "/api/v1/auth/token", json={}, headers={"X-Forwarded-For": "203.0.113.7"}
        )
    assert header_values(response.json(), "x-forwarded-for") == ["127.0.0.1"]
