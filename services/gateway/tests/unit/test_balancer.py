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


def test_the_less_busy_of_two_choices_is_chosen() -> None:
    registry, (a, b, c) = _registry("a", "b", "c")
    a.in_flight, b.in_flight, c.in_flight = 3, 1, 2
    service = registry.service("accounts")
    picks = Counter(service.choose() for _ in range(300))
    # The busiest of three never wins a pair; the least busy wins every pair it is in.
    assert a not in picks
    assert picks[b] > picks[c] > 0
    b.in_flight = 5
    picks = Counter(service.choose() for _ in range(300))
    assert b not in picks


def test_two_instances_least_busy_always_wins() -> None:
    registry, (a, b) = _registry("a", "b")
    a.in_flight, b.in_flight = 2, 1
    service = registry.service("accounts")
    assert all(service.choose() is b for _ in range(10))


def test_a_health_penalty_weights_the_load() -> None:
    registry, (a, b, c) = _registry("a", "b", "c")
    a.penalty = 3
    a.in_flight = 1
    b.in_flight = 2
    c.in_flight = 2
    service = registry.service("accounts")
    picks = Counter(service.choose() for _ in range(300))
    assert a not in picks  # 1 in flight counts as 4: more than the others' 2
    # One penalty point is forgiven per passed health check.
    for _ in range(3):
        registry.record_check(a, ok=True)
    assert a.penalty == 0
    picks = Counter(service.choose() for _ in range(300))
    assert picks[a] > 150  # wins every pair it is in: about 2/3


def test_idle_instances_get_traffic_whatever_their_penalty() -> None:
    registry, (a, b, c) = _registry("a", "b", "c")
    a.penalty = 5
    service = registry.service("accounts")
    picks = Counter(service.choose() for _ in range(30))
    assert picks == {a: 10, b: 10, c: 10}


def test_exclude_is_never_chosen_with_p2c() -> None:
    registry, instances = _registry("a", "b", "c", "d")
    service = registry.service("accounts")
    for excluded in instances:
        assert all(service.choose(exclude=excluded) is not excluded for _ in range(200))


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


# shards


def _sharded(*shards: int | None) -> tuple[Registry, list[Instance]]:
    """One healthy accounts instance per argument, serving that shard."""
    registry = Registry(_pool, unhealthy_after=1, services=("accounts",))
    instances = [
        registry.add("accounts", f"accounts-{n}", f"http://127.0.0.1:{9000 + n}", shard=shard)
        for n, shard in enumerate(shards)
    ]
    for instance in instances:
        registry.record_check(instance, ok=True)
    return registry, instances


def test_an_unsharded_service_has_no_shards() -> None:
    registry, (a, b) = _registry("a", "b")
    service = registry.service("accounts")
    assert not service.sharded
    assert service.shard_count == 0
    assert service.shards == ()
    assert service.shard(0) is None
    assert service.everyone.healthy == [a, b]


def test_instances_are_grouped_by_shard_and_chosen_within_it() -> None:
    registry, (a0, b0, a1, b1) = _sharded(0, 0, 1, 1)
    service = registry.service("accounts")
    assert service.sharded
    assert service.shard_count == 2
    zero, one = service.shard(0), service.shard(1)
    assert zero is not None
    assert one is not None
    assert (zero.shard, zero.instances, zero.healthy) == (0, [a0, b0], [a0, b0])
    assert (one.shard, one.instances, one.healthy) == (1, [a1, b1], [a1, b1])
    a1.in_flight = 1
    b0.in_flight = a0.in_flight = 0
    # Idle instances of shard 0 do not attract shard 1's traffic.
    assert all(one.choose() is b1 for _ in range(5))
    assert one.choose(exclude=b1) is a1
    assert Counter(zero.choose() for _ in range(10)) == {a0: 5, b0: 5}
    # The service as a whole still sees every instance (the OpenAPI fetch uses it).
    assert service.healthy == [a0, b0, a1, b1]


def test_health_changes_reach_the_shard_lists() -> None:
    registry, (a0, a1, b1) = _sharded(0, 1, 1)
    one = registry.service("accounts").shard(1)
    assert one is not None
    registry.record_check(a1, ok=False)
    assert one.healthy == [b1]
    registry.record_check(b1, ok=False)
    assert one.choose() is None
    zero = registry.service("accounts").shard(0)
    assert zero is not None
    assert zero.choose() is a0
    registry.record_check(a1, ok=True)
    assert one.choose() is a1


def test_the_shard_count_is_one_more_than_the_highest_shard_listed() -> None:
    registry, _ = _sharded(0, 2)
    service = registry.service("accounts")
    # Shard 1 is missing from the topology: a gap, not a renumbering of everyone's shard.
    assert service.shard_count == 3
    assert service.shard(1) is None
    assert service.shard(3) is None
    assert service.shard(-1) is None
    assert service.shards[1] is None


def test_shard_lists_follow_membership_and_stay_the_same_objects() -> None:
    registry, (_, a1) = _sharded(0, 1)
    service = registry.service("accounts")
    one = service.shard(1)
    assert one is not None
    b1 = registry.add("accounts", "accounts-b1", "http://127.0.0.1:9100", shard=1)
    registry.record_check(b1, ok=True)
    assert service.shard(1) is one  # an Exchange holding it sees the newcomer
    assert one.healthy == [a1, b1]

    registry.remove("accounts", a1.name)
    registry.remove("accounts", b1.name)
    # Shard 1 is gone from the topology: the service has one shard now, and whoever
    # still holds shard 1's list finds nobody in it.
    assert service.shard_count == 1
    assert service.shard(1) is None
    assert one.choose() is None
    assert service.shard(0) is not None


def test_instances_without_a_shard_get_no_sharded_traffic() -> None:
    registry, (a0, loose) = _sharded(0, None)
    service = registry.service("accounts")
    assert service.shard_count == 1
    zero = service.shard(0)
    assert zero is not None
    assert zero.instances == [a0]
    assert loose in service.healthy


@pytest.mark.parametrize("shard", [-1, 1000])
def test_impossible_shards_are_refused(shard: int) -> None:
    registry = Registry(_pool, unhealthy_after=1)
    with pytest.raises(ValueError, match="bad shard"):
        registry.add("accounts", "a", "http://127.0.0.1:1", shard=shard)
    assert registry.service("accounts").instances == {}
