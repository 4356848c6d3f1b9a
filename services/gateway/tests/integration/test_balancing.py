"""Least-busy balancing, health checks, topology changes and connection reuse."""

from __future__ import annotations

import asyncio

import httpx

from flotilla_kit.problems import problem_type

from .harness import ECHO_POLICY, FlakyKeepAliveUpstream, Stack, Upstream


async def _send_until_held(
    client: httpx.AsyncClient, slow: Upstream
) -> asyncio.Task[httpx.Response]:
    """Send `/slow` requests one at a time until `slow` holds one; others are answered."""
    for _ in range(10):
        slow.entered_event.clear()
        request = asyncio.ensure_future(client.get("/api/v1/auth/x/slow"))
        entered = asyncio.ensure_future(slow.entered_event.wait())
        await asyncio.wait({request, entered}, return_when=asyncio.FIRST_COMPLETED)
        if entered.done():
            return request
        entered.cancel()
        assert request.result().headers["x-instance"] != slow.name
    raise AssertionError(f"{slow.name} never got a request")


async def test_requests_go_to_the_least_busy_instance(stack: Stack) -> None:
    slow = await stack.upstream("auth", "auth-slow")
    fast = await stack.upstream("auth", "auth-fast")
    fast.release.set()  # only `slow` holds `/slow` requests
    await stack.start_gateway(policy=ECHO_POLICY)
    instances = {i.name: i for i in stack.registry.instances()}
    async with stack.client() as client:
        held = await _send_until_held(client, slow)
        assert instances[slow.name].in_flight == 1

        # While `slow` is busy, every request sent meanwhile goes to the idle instance
        # (round robin would send every second one to `slow`).
        during = [await client.get("/api/v1/auth/x") for _ in range(10)]
        assert {r.headers["x-instance"] for r in during} == {fast.name}
        assert instances[slow.name].in_flight == 1

        slow.release.set()
        first = await held
        assert first.status_code == 200
        assert first.headers["x-instance"] == slow.name
    assert [i.in_flight for i in instances.values()] == [0, 0]


async def test_idle_traffic_is_spread(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY)
    async with stack.client() as client:
        answers = [await client.get("/api/v1/auth/x") for _ in range(10)]
    served = [r.headers["x-instance"] for r in answers]
    assert served.count("auth-0") == served.count("auth-1") == 5


async def test_no_healthy_instance_gives_503_with_retry_after(stack: Stack) -> None:
    auth = await stack.upstream("auth")
    auth.ready = False
    await stack.start_gateway(policy=ECHO_POLICY, wait_healthy=False)
    instance = next(stack.registry.instances())
    # Fails its checks from the start: never admitted.
    await stack.wait_until(lambda: instance.failures >= 2)
    async with stack.client() as client:
        response = await client.get("/api/v1/auth/x")
        ready = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == problem_type("unavailable")
    assert "auth" in response.json()["detail"]
    # The gateway itself stays ready: it answers, and says what it lacks.
    assert ready.status_code == 200
    assert ready.json()["unavailable"]["services"] == ["auth"]
    assert auth.seen == []


async def test_an_instance_failing_readyz_is_taken_out_and_readmitted(stack: Stack) -> None:
    a = await stack.upstream("auth")
    b = await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY)
    instance_a = next(i for i in stack.registry.instances() if i.name == a.name)

    a.ready = False
    await stack.wait_until(lambda: not instance_a.healthy)
    async with stack.client() as client:
        while_out = [await client.get("/api/v1/auth/x") for _ in range(6)]
        assert {r.headers["x-instance"] for r in while_out} == {b.name}

        a.ready = True
        await stack.wait_until(lambda: instance_a.healthy)
        # Re-admitted with a slow-start penalty, forgiven one passed check at a time.
        await stack.wait_until(lambda: instance_a.penalty == 0)
        back_in = [await client.get("/api/v1/auth/x") for _ in range(6)]
        assert {r.headers["x-instance"] for r in back_in} == {a.name, b.name}


async def test_gets_survive_a_killed_instance(stack: Stack) -> None:
    a = await stack.upstream("auth")
    b = await stack.upstream("auth")
    await stack.start_gateway(
        policy=ECHO_POLICY, health_interval_s=5.0
    )  # only requests notice the death
    async with stack.client() as client:
        warm = [await client.get("/api/v1/auth/x") for _ in range(4)]
        assert {r.headers["x-instance"] for r in warm} == {a.name, b.name}
        await a.stop()
        after = [await client.get("/api/v1/auth/x") for _ in range(6)]
    assert [r.status_code for r in after] == [200] * 6
    assert {r.headers["x-instance"] for r in after} == {b.name}
    instance_a = next(i for i in stack.registry.instances() if i.name == a.name)
    # The failures triggered fast re-checks, which took the dead instance out.
    await stack.wait_until(lambda: not instance_a.healthy)


async def test_a_post_to_a_dead_instance_is_not_retried(stack: Stack) -> None:
    a = await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY, health_interval_s=5.0)
    await a.stop()
    async with stack.client() as client:
        response = await client.post("/api/v1/auth/token", json={})
    # Nothing reached a service: unavailable, come back in a second.
    assert response.status_code == 503
    assert response.json()["type"] == problem_type("unavailable")
    assert response.headers["retry-after"] == "1"


async def test_topology_changes_add_and_drain_instances(stack: Stack) -> None:
    a = await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY)
    async with stack.client() as client:
        # A new instance appears in the file: checked at once, then gets traffic.
        b = await stack.upstream("auth")
        await stack.wait_until(
            lambda: len(stack.registry.service("auth").healthy) == 2, timeout_s=5
        )
        spread = [await client.get("/api/v1/auth/x") for _ in range(4)]
        assert {r.headers["x-instance"] for r in spread} == {a.name, b.name}

        # `a` is removed while it holds a request: that request still completes.
        b.release.set()
        held = await _send_until_held(client, a)
        stack.write_topology([b])
        await stack.wait_until(lambda: len(stack.registry.service("auth").instances) == 1)
        after = [await client.get("/api/v1/auth/x") for _ in range(4)]
        assert {r.headers["x-instance"] for r in after} == {b.name}
        a.release.set()
        assert (await held).headers["x-instance"] == a.name


async def test_keep_alive_connections_are_reused(stack: Stack) -> None:
    upstream = await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY)
    async with stack.client() as client:
        for _ in range(50):
            response = await client.get("/api/v1/auth/x")
            assert response.status_code == 200
    # One connection for requests (sequential), one for health checks; a spare at most.
    assert len(upstream.clients) <= 3
    assert len(upstream.seen) == 50


async def test_a_get_on_a_connection_closed_while_idle_is_resent(stack: Stack) -> None:
    upstream = FlakyKeepAliveUpstream("auth", "auth-0")
    await stack.raw_upstream(upstream)
    await stack.start_gateway(policy=ECHO_POLICY, health_interval_s=5.0)
    async with stack.client() as client:
        first = await client.get("/api/v1/auth/one")
        second = await client.get("/api/v1/auth/two")  # reuses the connection: dropped
    assert first.status_code == second.status_code == 200
    assert "GET /api/v1/auth/two HTTP/1.1" in upstream.dropped
    assert upstream.answered.count("GET /api/v1/auth/two HTTP/1.1") == 1


async def test_a_post_on_a_connection_closed_while_idle_is_not_resent(stack: Stack) -> None:
    upstream = FlakyKeepAliveUpstream("auth", "auth-0")
    await stack.raw_upstream(upstream)
    await stack.start_gateway(policy=ECHO_POLICY, health_interval_s=5.0)
    async with stack.client() as client:
        first = await client.post("/api/v1/auth/one", json={})
        second = await client.post("/api/v1/auth/two", json={})
    assert first.status_code == 200
    assert second.status_code == 503
    assert second.json()["type"] == problem_type("unavailable")
    assert second.headers["retry-after"] == "1"
    # (Health checks meet the same fate on their own connection, and are resent.)
    assert [r for r in upstream.dropped if "/api/" in r] == ["POST /api/v1/auth/two HTTP/1.1"]
    assert "POST /api/v1/auth/two HTTP/1.1" not in upstream.answered


async def test_a_draining_instance_is_taken_out_at_its_first_answer(stack: Stack) -> None:
    a = await stack.upstream("auth")
    b = await stack.upstream("auth")
    # Many failed checks would be needed to take an instance out for failing: only the
    # draining answer can explain an instance leaving after one.
    await stack.start_gateway(policy=ECHO_POLICY, health_interval_s=0.05, unhealthy_after=50)
    instances = {i.name: i for i in stack.registry.instances()}
    async with stack.client() as client:
        await stack.wait_until(lambda: len(stack.registry.service("auth").healthy) == 2)
        b.release.set()
        held = await _send_until_held(client, a)
        a.drain.start()  # as SIGTERM does in a real service
        await stack.wait_until(lambda: not instances[a.name].healthy)
        assert instances[a.name].failures == 1
        after = [await client.get("/api/v1/auth/x") for _ in range(6)]
        assert {r.headers["x-instance"] for r in after} == {b.name}
        # What it already had is still answered: draining is not dying.
        a.release.set()
        finished = await held
    assert finished.status_code == 200
    assert finished.headers["x-instance"] == a.name


async def test_an_instance_without_traffic_is_checked_rarely(stack: Stack) -> None:
    upstream = await stack.upstream("auth")
    await stack.start_gateway(
        policy=ECHO_POLICY, health_interval_s=0.05, health_idle_interval_s=60.0
    )
    # The first check admits it; the second finds that no request came since, and the
    # next one is due a minute later instead of every 0.05 s.
    await stack.wait_until(lambda: upstream.probes >= 2)
    checked = upstream.probes
    await asyncio.sleep(0.5)  # ten intervals of a busy instance
    assert upstream.probes == checked
    async with stack.client() as client:
        assert (await client.get("/api/v1/auth/x")).status_code == 200
