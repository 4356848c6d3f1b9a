"""Outlier ejection, the circuit breaker and the retry budget, without sockets."""

from __future__ import annotations

import pytest

from flotilla_gateway import balancer
from flotilla_gateway.balancer import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breaker,
    Instance,
    Registry,
    RetryBudget,
)
from flotilla_gateway.settings import Resilience
from flotilla_gateway.upstream import ConnectionPool, Endpoint


def _pool(endpoint: Endpoint) -> ConnectionPool:
    return ConnectionPool(
        endpoint,
        ssl_context=None,
        connect_timeout_s=1.0,
        max_idle=1,
        idle_timeout_s=1.0,
        max_response_bytes=1024,
    )


def _registry(
    count: int, *, eject_after: int = 3, eject_base_s: float = 0.05, eject_max_s: float = 300.0
) -> tuple[Registry, list[Instance]]:
    resilience = Resilience(
        outlier_consecutive_failures=eject_after,
        outlier_ejection_s=eject_base_s,
        outlier_max_ejection_s=eject_max_s,
    )
    registry = Registry(_pool, unhealthy_after=2, services=("auth",), resilience=resilience)
    instances = [
        registry.add("auth", f"auth-{n}", f"http://127.0.0.1:{9000 + n}") for n in range(count)
    ]
    for instance in instances:
        registry.record_check(instance, ok=True)
    return registry, instances


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(balancer, "monotonic", fake)
    return fake


async def test_consecutive_failures_eject_then_the_cool_down_readmits() -> None:
    registry, (a, b, c) = _registry(3)
    service = registry.service("auth")
    registry.failed(a)
    registry.failed(a)
    a.errors = 0  # a good answer in between: the count starts again
    registry.failed(a)
    registry.failed(a)
    assert a.ejections == 0
    registry.failed(a)
    assert a.ejections == 1
    assert a.ejected
    assert a not in service.healthy
    assert all(service.choose() is not a for _ in range(30))
    await registry.wait_until(lambda: not a.ejected, timeout_s=2)
    assert a in service.healthy
    assert a.errors == 0
    assert a.penalty >= registry.resilience.slow_start_checks  # slow start
    assert {b, c} <= set(service.healthy)


async def test_the_cool_down_doubles_when_failing_again_soon() -> None:
    registry, (a, _b) = _registry(2, eject_base_s=0.05, eject_max_s=0.15)
    for _ in range(3):
        registry.failed(a)
    assert (a.ejected, a.eject_streak) == (True, 0)
    await registry.wait_until(lambda: not a.ejected, timeout_s=2)
    for _ in range(3):
        registry.failed(a)
    assert (a.ejected, a.eject_streak) == (True, 1)  # 0.1 s this time
    await registry.wait_until(lambda: not a.ejected, timeout_s=2)
    for _ in range(3):
        registry.failed(a)
    assert (a.ejected, a.eject_streak) == (True, 2)  # capped at 0.15 s
    await registry.wait_until(lambda: not a.ejected, timeout_s=2)
    assert a.ejections == 3


async def test_the_last_available_instance_is_not_ejected() -> None:
    registry, (a, b) = _registry(2)
    for _ in range(3):
        registry.failed(a)
    assert a.ejected
    for _ in range(5):
        registry.failed(b)
    assert not b.ejected  # ejecting it would turn its errors into 503s
    assert registry.service("auth").choose() is b


async def test_failures_raise_the_penalty_and_checks_forgive_it() -> None:
    registry, (a, _b, _c) = _registry(3, eject_after=100)
    registry.failed(a)
    registry.failed(a)
    assert a.penalty == 2
    registry.record_check(a, ok=True)
    assert a.penalty == 1


def test_the_breaker_opens_after_consecutive_failures(clock: Clock) -> None:
    breaker = Breaker(consecutive=3, open_s=5.0, min_requests=100)
    breaker.record(False)
    breaker.record(False)
    breaker.record(True)
    breaker.record(False)
    breaker.record(False)
    assert breaker.state == CLOSED
    breaker.record(False)
    assert breaker.state == OPEN
    assert not breaker.admit()
    assert breaker.retry_after() == 5
    clock.now += 4.5
    assert breaker.retry_after() == 1
    assert not breaker.admit()


def test_the_breaker_opens_on_the_failure_ratio_of_a_window(clock: Clock) -> None:
    breaker = Breaker(window_s=10.0, min_requests=10, ratio=0.5, consecutive=100)
    for n in range(9):
        breaker.record(n % 3 == 0)  # 6 failures out of 9, but fewer than 10 attempts
    assert breaker.state == CLOSED
    clock.now += 11  # a new window: the old attempts no longer count
    for n in range(10):
        breaker.record(n % 2 == 0)  # 5 out of 10: not more than half
    assert breaker.state == CLOSED
    breaker.record(False)  # 6 out of 11
    assert breaker.state == OPEN
    assert breaker.opened == 1


def test_half_open_lets_one_probe_through(clock: Clock) -> None:
    breaker = Breaker(consecutive=1, open_s=2.0)
    breaker.record(False)
    assert breaker.state == OPEN
    clock.now += 2.0
    assert breaker.admit()  # the probe
    assert breaker.state == HALF_OPEN
    assert not breaker.admit()  # everyone else waits for its outcome
    breaker.record(False)  # the probe failed: open again
    assert breaker.state == OPEN
    assert not breaker.admit()
    clock.now += 2.0
    assert breaker.admit()
    breaker.record(True)  # the probe passed: closed
    assert breaker.state == CLOSED


def test_a_lost_probe_is_replaced_after_open_s(clock: Clock) -> None:
    breaker = Breaker(consecutive=1, open_s=2.0)
    breaker.record(False)
    clock.now += 2.0
    assert breaker.admit()
    clock.now += 1.0
    assert not breaker.admit()
    clock.now += 1.0
    assert breaker.admit()  # the first probe never reported (no instance, say)


def test_the_retry_budget_is_a_share_of_requests_plus_a_reserve(clock: Clock) -> None:
    budget = RetryBudget(ratio=0.2, min_per_s=3.0)
    for _ in range(10):
        budget.deposit()
    # Two retries from ten requests, then the reserve of three per second.
    assert [budget.withdraw() for _ in range(6)] == [True] * 5 + [False]
    assert budget.exhausted == 1
    clock.now += 1.0 / 3.0 + 1e-6
    assert budget.withdraw()
    assert not budget.withdraw()
    assert budget.exhausted == 2
