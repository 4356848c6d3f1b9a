"""Least-busy choice under a slow instance, outlier ejection, retries and the breaker."""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from flotilla_gateway.balancer import CLOSED, OPEN
from flotilla_gateway.routes import PUBLIC, RoutePolicy
from flotilla_kit.problems import problem_type

from .harness import ECHO_POLICY, Stack

# Keep the breaker out of tests that are not about it.
NO_BREAKER: dict[str, Any] = {
    "breaker_consecutive_failures": 10_000,
    "breaker_min_requests": 10_000,
}
# And ejection out of tests that are not about it.
NO_EJECTION: dict[str, Any] = {"outlier_consecutive_failures": 10_000}


async def _metrics(
    client: httpx.AsyncClient,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _instance_labels(name: str, **more: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"instance": name, "service": "auth", "shard": "", **more}.items()))


async def test_a_slow_instance_gets_few_new_requests(stack: Stack) -> None:
    slow = await stack.upstream("auth")
    fast = [await stack.upstream("auth"), await stack.upstream("auth")]
    slow.delay_s = 0.5
    await stack.start_gateway(policy=ECHO_POLICY)
    served: list[str] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in range(15):
            response = await client.get("/api/v1/auth/x")
            assert response.status_code == 200
            served.append(response.headers["x-instance"])

    async with stack.client() as client:
        await asyncio.gather(*(worker(client) for _ in range(6)))
        found = await _metrics(client)
    assert len(served) == 90
    to_fast = sum(name in {f.name for f in fast} for name in served)
    assert to_fast / len(served) >= 0.8, served.count(slow.name)
    assert all(i.in_flight == 0 for i in stack.registry.instances())
    # Per-instance request counts and latency histograms, read at scrape time.
    for upstream in (slow, *fast):
        labels = _instance_labels(upstream.name)
        answered = found[
            (
                "flotilla_gateway_upstream_requests_total",
                _instance_labels(upstream.name, outcome="response"),
            )
        ]
        assert answered == served.count(upstream.name)
        assert found[("flotilla_gateway_upstream_duration_seconds_count", labels)] == answered
        assert found[("flotilla_gateway_upstream_in_flight", labels)] == 0


async def test_failing_instances_are_ejected_and_readmitted(stack: Stack) -> None:
    bad = await stack.upstream("auth")  # answers 502
    dead = await stack.upstream("auth")  # stopped
    good = await stack.upstream("auth")
    await stack.start_gateway(
        policy=ECHO_POLICY,
        health_interval_s=5.0,  # only requests notice the failures at first
        unhealthy_after=10,  # the dead one's health checks take 2.5 s to take it out
        outlier_consecutive_failures=2,
        outlier_ejection_s=1.0,
        slow_start_checks=0,
        **NO_BREAKER,
    )
    instances = {i.name: i for i in stack.registry.instances()}
    bad.status = 502
    await dead.stop()
    async with stack.client() as client:
        for _ in range(40):
            await client.get("/api/v1/auth/x")
            if instances[bad.name].ejected and instances[dead.name].ejected:
                break
        assert instances[bad.name].ejected
        assert instances[dead.name].ejected
        bad_seen = len(bad.seen)

        # Only the good instance gets traffic now.
        during = [await client.get("/api/v1/auth/x") for _ in range(10)]
        assert [r.status_code for r in during] == [200] * 10
        assert {r.headers["x-instance"] for r in during} == {good.name}
        assert len(bad.seen) == bad_seen
        found = await _metrics(client)
        for name in (bad.name, dead.name):
            key = ("flotilla_gateway_upstream_ejections_total", _instance_labels(name))
            assert found[key] >= 1
            assert found[("flotilla_gateway_upstream_healthy", _instance_labels(name))] == 0

        # After the cool-down the 502 instance is back (its probes pass); the dead one is
        # re-admitted by the ejection too, but its own health checks keep it out.
        bad.status = 200
        await stack.wait_until(lambda: not instances[bad.name].ejected, timeout_s=5)
        after = [await client.get("/api/v1/auth/x") for _ in range(10)]
        assert bad.name in {r.headers["x-instance"] for r in after}
        assert dead.name not in {r.headers["x-instance"] for r in after}
        await stack.wait_until(lambda: not instances[dead.name].healthy, timeout_s=10)


async def test_a_write_without_idempotency_key_is_delivered_once(stack: Stack) -> None:
    good = await stack.upstream("auth")
    dropper = await stack.dropping_upstream("auth", "auth-dropper")
    await stack.start_gateway(
        policy=ECHO_POLICY, retry_budget_min_per_s=100.0, **NO_BREAKER, **NO_EJECTION
    )
    async with stack.client() as client:
        answers: dict[str, int] = {}
        for number in range(30):
            path = f"/api/v1/auth/plain{number}"
            answers[path] = (await client.post(path, json={})).status_code
            if dropper.delivered:
                break
        # One POST reached the dropping instance: it was not sent anywhere else.
        (dropped,) = dropper.delivered
        method, path = dropped.split(" ")
        assert method == "POST"
        assert answers[path] == 502
        assert f"POST {path}" not in good.proxied
        assert all(status == 200 for p, status in answers.items() if p != path)

        # With an Idempotency-Key the same write moves to the other instance.
        keyed: dict[str, httpx.Response] = {}
        for number in range(30):
            path = f"/api/v1/auth/keyed{number}"
            keyed[path] = await client.post(
                path, json={}, headers={"Idempotency-Key": f"key-{number}"}
            )
            if len(dropper.delivered) == 2:
                break
        method, path = dropper.delivered[1].split(" ")
        assert keyed[path].status_code == 200
        assert keyed[path].headers["x-instance"] == good.name
        assert good.proxied.count(f"POST {path}") == 1
        assert all(r.status_code == 200 for r in keyed.values())

        # GETs move too.
        gets = []
        for number in range(30):
            gets.append(await client.get(f"/api/v1/auth/get{number}"))
            if dropper.delivered[-1].startswith("GET "):
                break
        assert dropper.delivered[-1].startswith("GET ")
        assert all(r.status_code == 200 for r in gets)
        found = await _metrics(client)
    retried = found[("flotilla_gateway_retries_total", (("route", "/api/v1/auth/{a}"),))]
    assert retried == len(dropper.delivered) - 1
    assert all(i.in_flight == 0 for i in stack.registry.instances())


async def test_idempotent_requests_move_on_502_and_503_writes_do_not(stack: Stack) -> None:
    failing = await stack.upstream("auth")
    good = await stack.upstream("auth")
    failing.status = 503
    await stack.start_gateway(
        policy=ECHO_POLICY, retry_budget_min_per_s=100.0, **NO_BREAKER, **NO_EJECTION
    )
    async with stack.client() as client:
        gets = [await client.get(f"/api/v1/auth/g{n}") for n in range(6)]
        posts = [await client.post(f"/api/v1/auth/p{n}", json={}) for n in range(6)]
    assert [r.status_code for r in gets] == [200] * 6
    assert {r.headers["x-instance"] for r in gets} == {good.name}
    assert any(s["method"] == "GET" for s in failing.seen)
    # A POST without a key gets the upstream's own answer, wherever it went.
    statuses = {r.headers["x-instance"]: r.status_code for r in posts}
    assert statuses.get(failing.name, 503) == 503
    assert sum(s["method"] == "POST" for s in failing.seen + good.seen) == 6


async def test_retries_stop_when_the_budget_is_used_up(stack: Stack) -> None:
    await stack.upstream("auth")
    dropper = await stack.dropping_upstream("auth", "auth-dropper")
    await stack.start_gateway(
        policy=ECHO_POLICY,
        retry_budget_ratio=0.0,
        retry_budget_min_per_s=1.0,  # a reserve of one retry, refilled at 1/s
        slow_start_checks=0,
        **NO_BREAKER,
        **NO_EJECTION,
    )
    async with stack.client() as client:
        statuses = []
        for number in range(40):
            statuses.append((await client.get(f"/api/v1/auth/b{number}")).status_code)
            if len(dropper.delivered) == 2:
                break
        found = await _metrics(client)
    assert len(dropper.delivered) == 2
    # The first failure was retried (200), the second was not: the budget was empty, and
    # the GET is a 503 to come back to in a second.
    assert statuses.count(503) == 1
    assert found[("flotilla_gateway_retry_budget_exhausted_total", (("service", "auth"),))] == 1


async def test_the_breaker_opens_and_closes_again(stack: Stack) -> None:
    upstream = await stack.upstream("auth")
    await stack.start_gateway(
        policy=ECHO_POLICY,
        breaker_consecutive_failures=3,
        breaker_open_s=0.3,
        **NO_EJECTION,
    )
    breaker = stack.registry.service("auth").breaker
    upstream.status = 503
    async with stack.client() as client:
        failed = [await client.post("/api/v1/auth/x", json={}) for _ in range(3)]
        assert [r.status_code for r in failed] == [503] * 3
        assert breaker.state == OPEN
        refused = await client.post("/api/v1/auth/x", json={})
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == problem_type("unavailable")
        assert refused.headers["retry-after"] == "1"
        assert len(upstream.seen) == 3  # refused at the gateway
        found = await _metrics(client)
        assert (
            found[("flotilla_gateway_upstream_breaker_state", (("service", "auth"), ("shard", "")))]
            == 2
        )

        # Half-open: one probe goes through; it fails, so the breaker opens again.
        await asyncio.sleep(max(0.0, breaker.reopen_at - monotonic()))
        probe = await client.post("/api/v1/auth/x", json={})
        assert probe.status_code == 503
        assert len(upstream.seen) == 4
        assert breaker.state == OPEN
        assert (await client.post("/api/v1/auth/x", json={})).status_code == 503
        assert len(upstream.seen) == 4

        # The next probe succeeds: closed, traffic flows.
        upstream.status = 200
        await asyncio.sleep(max(0.0, breaker.reopen_at - monotonic()))
        assert (await client.post("/api/v1/auth/x", json={})).status_code == 200
        assert breaker.state == CLOSED
        after = [await client.post("/api/v1/auth/x", json={}) for _ in range(3)]
        assert [r.status_code for r in after] == [200] * 3
        found = await _metrics(client)
        assert (
            found[("flotilla_gateway_upstream_breaker_state", (("service", "auth"), ("shard", "")))]
            == 0
        )


async def test_a_route_timeout_from_the_policy_gives_504(stack: Stack) -> None:
    upstream = await stack.upstream("auth")
    policy = (
        RoutePolicy("GET", "/api/v1/auth/{a}/slow", "auth", PUBLIC, timeout_s=0.2),
        RoutePolicy("GET", "/api/v1/auth/{a}", "auth", PUBLIC),
    )
    # The gateway-wide timeout is long: only the route's own can answer in time.
    await stack.start_gateway(policy=policy, upstream_timeout_s=30.0)
    async with stack.client() as client:
        started = monotonic()
        response = await client.get("/api/v1/auth/x/slow")
        elapsed = monotonic() - started
        upstream.release.set()
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == problem_type("gateway-timeout")
    assert elapsed < 5
    assert all(i.in_flight == 0 for i in stack.registry.instances())
