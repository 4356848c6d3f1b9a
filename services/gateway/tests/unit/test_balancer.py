from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from flotilla_gateway.balancer import Instance, Registry, Service
from flotilla_gateway.upstream import ConnectionPool, Endpoint


def _pool(endpoint: Endpoint) -> ConnectionPool:
    # Nothing is connected until a request is sent; these tests never send one.
    return ConnectionPool(
        endpoint,
        ssl_context=None,
        connect_timeout_s=1.0,
        max_idle=4,
        idle_timeout_s=4.0,
        max_response_bytes=1024,
    )


def _registry(*names: str, unhealthy_after: int = 2) -> tuple[Registry, list[Instance]]:
    registry = Registry(_pool, unhealthy_after=unhealthy_after, services=("accounts",))
    instances = [
        registry.add("accounts", name, f"http://127.0.0.1:{9000 + i}")
        for i, name in enumerate(names)
    ]
    for instance in instances:
        registry.record_check(instance, ok=True)
    return registry, instances


def test_new_instances_get_no_traffic_until_a_check_passes() -> None:
    registry = Registry(_pool, unhealthy_after=2)
    instance = registry.add("accounts", "accounts-0", "http://127.0.0.1:9000")
    service = registry.service("accounts")
    assert service.choose() is None
    registry.record_check(instance, ok=True)
    assert service.choose() is instance


def test_the_least_busy_instance_is_chosen() -> None:
    registry, (a, b, c) = _registry("a", "b", "c")
    a.in_flight, b.in_flight, c.in_flight = 3, 1, 2
    service = registry.service("accounts")
    assert all(service.choose() is b for _ in range(10))
    b.in_flight = 5
    assert service.choose() is c


def test_ties_rotate_so_idle_traffic_spreads() -> None:
    registry, instances = _registry("a", "b", "c")
    service = registry.service("accounts")
    picks = Counter(service.choose() for _ in range(30))
    assert picks == {instance: 10 for instance in instances}


def test_exclude_skips_an_instance_even_when_it_is_idle() -> None:
    registry, (a, b) = _registry("a", "b")
    b.in_flight = 7
    service = registry.service("accounts")
    assert service.choose(exclude=a) is b
    registry.record_check(b, ok=False)
    registry.record_check(b, ok=False)
    assert service.choose(exclude=a) is None


def test_accounting_through_simulated_requests() -> None:
    """Increment on send, decrement when answered: counts return to zero, load stays even."""
    registry, instances = _registry("a", "b")
    service = registry.service("accounts")
    held: list[Instance] = []
    for _ in range(6):
        chosen = service.choose()
        assert chosen is not None
        chosen.in_flight += 1
        held.append(chosen)
    assert [i.in_flight for i in instances] == [3, 3]
    for instance in held:
        instance.in_flight -= 1
    assert [i.in_flight for i in instances] == [0, 0]


def test_unhealthy_only_after_consecutive_failures_and_healthy_at_once() -> None:
    registry, (a, b) = _registry("a", "b", unhealthy_after=3)
    service = registry.service("accounts")
    results = [False, False, True, False, False, False, True]
    admitted = []
    for ok in results:
        registry.record_check(a, ok=ok)
        admitted.append(a in service.healthy)
    # The third failure in a row takes it out; the next success brings it back.
    assert admitted == [True, True, True, True, True, False, True]
    assert b in service.healthy


def test_removed_instances_get_no_new_requests() -> None:
    registry, (a, b) = _registry("a", "b")
    service = registry.service("accounts")
    removed = registry.remove("accounts", "a")
    assert removed is a
    assert a.removed
    assert all(service.choose() is b for _ in range(5))
    registry.record_check(a, ok=True)  # a late check result changes nothing
    assert service.healthy == [b]
    assert registry.remove("accounts", "a") is None
    assert registry.remove("nope", "a") is None


def test_duplicate_names_are_refused() -> None:
    registry, _ = _registry("a")
    with pytest.raises(ValueError, match="already exists"):
        registry.add("accounts", "a", "http://127.0.0.1:1")


def test_every_change_bumps_the_generation() -> None:
    registry, (a,) = _registry("a")
    before = registry.generation
    registry.record_check(a, ok=True)  # no change
    assert registry.generation == before
    registry.record_check(a, ok=False)
    registry.record_check(a, ok=False)
    assert registry.generation == before + 1
    registry.add("accounts", "b", "http://127.0.0.1:1")
    assert registry.generation == before + 2


async def test_wait_until_wakes_on_change() -> None:
    registry, (a,) = _registry("a", unhealthy_after=1)
    service = registry.service("accounts")
    registry.record_check(a, ok=False)
    assert service.choose() is None
    # The check result lands only after wait_until has found the predicate false.
    asyncio.get_running_loop().call_soon(registry.record_check, a, True)
    await registry.wait_until(lambda: service.choose() is a, timeout_s=5)
    assert a.healthy
    with pytest.raises(TimeoutError):
        await registry.wait_until(lambda: False, timeout_s=0.01)


def test_a_service_without_instances_chooses_nothing() -> None:
    assert Service("empty").choose() is None
