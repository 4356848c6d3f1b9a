"""Bucket math on a fake clock, route overrides, eviction, the 429 template, settings."""

from __future__ import annotations

import json

import pytest

from flotilla_gateway.balancer import Registry
from flotilla_gateway.metrics import GatewayMetrics
from flotilla_gateway.problems import ProblemCatalog
from flotilla_gateway.rate_limits import IDENTITY, IP, RateLimit, RateLimiter, parse_route_key
from flotilla_gateway.routes import POLICY
from flotilla_gateway.settings import GatewaySettings
from flotilla_gateway.upstream import ConnectionPool, Endpoint
from flotilla_kit.problems import problem_type


def test_a_full_bucket_allows_the_burst_then_refuses() -> None:
    limit = RateLimit(IDENTITY, rps=10, burst=3)
    assert [limit.take("alice", 0.0)[:2] for _ in range(3)] == [(True, 2), (True, 1), (True, 0)]
    allowed, remaining, retry_after = limit.take("alice", 0.0)
    assert (allowed, remaining) == (False, 0)
    assert retry_after == pytest.approx(0.1)  # one token comes back every 1/rps


def test_tokens_come_back_at_the_rate() -> None:
    limit = RateLimit(IDENTITY, rps=10, burst=3)
    for _ in range(3):
        limit.take("alice", 0.0)
    assert limit.take("alice", 0.05)[0] is False
    assert limit.take("alice", 0.1)[:2] == (True, 0)
    # 0.25 s later: 2.5 tokens earned, never more than the burst.
    assert limit.take("alice", 0.35)[:2] == (True, 1)
    assert limit.take("alice", 100.0)[:2] == (True, 2)


def test_waiting_the_retry_after_is_enough_and_a_refusal_costs_nothing() -> None:
    limit = RateLimit(IP, rps=2, burst=1)
    assert limit.take("10.0.0.1", 5.0)[0] is True
    refused = [limit.take("10.0.0.1", 5.0 + i * 0.01) for i in range(10)]
    assert not any(outcome[0] for outcome in refused)
    assert refused[-1][2] == pytest.approx(0.5 - 0.09)
    assert limit.take("10.0.0.1", 5.0 + 0.09 + refused[-1][2])[0] is True


def test_seconds_until_full_on_an_allowed_request() -> None:
    limit = RateLimit(IDENTITY, rps=4, burst=8)
    assert limit.take("alice", 0.0)[2] == pytest.approx(0.25)
    for _ in range(3):
        outcome = limit.take("alice", 0.0)
    assert outcome[2] == pytest.approx(1.0)


def test_keys_have_buckets_of_their_own() -> None:
    limit = RateLimit(IDENTITY, rps=1, burst=1)
    assert limit.take("alice", 0.0)[0] is True
    assert limit.take("alice", 0.0)[0] is False
    assert limit.take("bob", 0.0)[0] is True


def test_full_buckets_are_evicted_first_when_the_table_is_full() -> None:
    limit = RateLimit(IP, rps=1, burst=2, max_keys=4)
    for n in range(4):
        limit.take(f"10.0.0.{n}", 0.0)
    assert limit.keys_held == 4
    # Much later every bucket is full again: forgetting them changes nothing.
    limit.take("10.0.0.9", 60.0)
    assert limit.keys_held == 1


def test_without_idle_buckets_the_oldest_keys_go() -> None:
    limit = RateLimit(IP, rps=1, burst=1, max_keys=4)
    for n in range(4):
        assert limit.take(f"10.0.0.{n}", 0.0)[0] is True
    assert limit.take("10.0.0.9", 0.0)[0] is True
    assert limit.keys_held <= 4
    # The first key was dropped (bounded memory): its bucket starts full again.
    assert limit.take("10.0.0.0", 0.0)[0] is True
    assert limit.take("10.0.0.3", 0.0)[0] is False


def test_policy_item_is_a_structured_field_with_quota_and_refill_window() -> None:
    assert RateLimit(IDENTITY, rps=50, burst=100).policy_item == b'"identity";q=100;w=2'
    assert RateLimit(IP, rps=100, burst=200).policy_item == b'"ip";q=200;w=2'
    assert RateLimit(IP, rps=5, burst=1).policy_item == b'"ip";q=1;w=1'


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rps > 0"):
        RateLimit(IP, rps=0, burst=1)
    with pytest.raises(ValueError, match="burst >= 1"):
        RateLimit(IP, rps=1, burst=0)


def _public(method: str, path: str) -> bool | None:
    found = {(e.method, e.path): e.public for e in POLICY}
    return found.get((method, path))


def _limiter(routes: dict[str, tuple[float, int]]) -> RateLimiter:
    return RateLimiter.build(
        problems=ProblemCatalog(max_body_bytes=1, max_header_bytes=1),
        identity=(50, 100),
        ip=(100, 200),
        routes=routes,
        max_keys=10,
        public=_public,
    )


def test_a_route_limit_replaces_the_ip_limit_of_a_public_route() -> None:
    limiter = _limiter({"post /api/v1/auth/token": (5, 10)})
    ip, identity = limiter.limits_for("POST", "/api/v1/auth/token", public=True)
    assert identity is None
    assert ip is not None
    assert ip is not limiter.ip
    assert (ip.kind, ip.rps, ip.burst, ip.scope) == (IP, 5, 10, "POST /api/v1/auth/token")
    # Other public routes keep the default per-IP limit.
    assert limiter.limits_for("POST", "/api/v1/auth/logout", public=True) == (limiter.ip, None)


def test_a_route_limit_replaces_the_identity_limit_of_a_protected_route() -> None:
    limiter = _limiter({"POST /api/v1/transfers": (1, 2)})
    ip, identity = limiter.limits_for("POST", "/api/v1/transfers", public=False)
    assert ip is limiter.ip
    assert identity is not None
    assert identity is not limiter.identity
    assert (identity.kind, identity.burst) == (IDENTITY, 2)
    assert limiter.limits_for("GET", "/api/v1/transfers", public=False) == (
        limiter.ip,
        limiter.identity,
    )


def test_a_route_limit_must_name_a_policy_entry() -> None:
    with pytest.raises(ValueError, match="names no policy entry"):
        _limiter({"POST /api/v1/auth/tokens": (5, 10)})
    with pytest.raises(ValueError, match="METHOD /path"):
        parse_route_key("/api/v1/auth/token")


def test_the_429_names_the_limit_and_takes_a_retry_after() -> None:
    limiter = _limiter({"POST /api/v1/auth/token": (5, 10)})
    ip, _ = limiter.limits_for("POST", "/api/v1/auth/token", public=True)
    assert ip is not None
    assert ip.problem is not None
    reply = ip.problem.reply("rid-1", b"retry-after: 3\r\n")
    assert reply.status == 429
    assert b"retry-after: 3\r\n" in reply.head
    body = json.loads(reply.body)
    assert body["type"] == problem_type("rate-limited")
    assert (
        "per-ip rate limit on POST /api/v1/auth/token (5 requests/s, burst 10)" in (body["detail"])
    )
    assert body["request_id"] == "rid-1"


def test_route_limits_come_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FLOTILLA_RATE_LIMIT_ROUTES", '{"POST /api/v1/auth/token": {"rps": 5, "burst": 10}}'
    )
    monkeypatch.setenv("FLOTILLA_RATE_LIMIT_ENABLED", "false")
    settings = GatewaySettings()
    assert settings.rate_limit_enabled is False
    route = settings.rate_limit_routes["POST /api/v1/auth/token"]
    assert (route.rps, route.burst) == (5, 10)


def test_defaults_limit_in_process() -> None:
    settings = GatewaySettings()
    assert settings.rate_limit_enabled is True
    assert (settings.rate_limit_identity_rps, settings.rate_limit_identity_burst) == (50, 100)
    assert (settings.rate_limit_ip_rps, settings.rate_limit_ip_burst) == (100, 200)
    assert settings.valkey_url == ""


def _pool(endpoint: Endpoint) -> ConnectionPool:
    return ConnectionPool(
        endpoint,
        ssl_context=None,
        connect_timeout_s=1,
        max_idle=1,
        idle_timeout_s=1,
        max_response_bytes=1,
    )


def test_refusals_are_counted_by_route_and_kind() -> None:
    metrics = GatewayMetrics(Registry(_pool, unhealthy_after=1))
    route = metrics.route("/api/v1/auth/token")
    route.rate_limited(IP)
    route.rate_limited(IP)
    route.rate_limited(IDENTITY)
    text = metrics.render().decode()
    assert 'flotilla_gateway_rate_limited_total{limit="ip",route="/api/v1/auth/token"} 2.0' in text
    assert (
        'flotilla_gateway_rate_limited_total{limit="identity",route="/api/v1/auth/token"} 1.0'
        in text
    )
