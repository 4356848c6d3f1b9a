"""Upstream instances, their health and load, and the choice of one per request.

Each `Service` keeps ready-made lists of its healthy instances, rebuilt only when health
or membership changes, so choosing costs one pass over a short list. The choice is the
instance with the fewest requests in flight; ties go to the first one found from a start
point that moves on every call, so an idle service still spreads its traffic.

A sharded service (its instances carry a `shard` in the topology) also keeps one such
list per shard, indexed by shard number, so a request whose shard is known picks among
that shard's instances only, at the same cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from flotilla_gateway.upstream import ConnectionPool, Endpoint
from flotilla_kit.logs import get_logger

__all__ = ["Candidates", "Instance", "Registry", "Service"]

_log = get_logger("flotilla.gateway.balancer")

# Account ids spell their shard in at most three digits (`flotilla_kit.sharding`).
MAX_SHARDS = 1000


class Instance:
    """One instance of a service, as the gateway sees it."""

    __slots__ = (
        "endpoint",
        "failures",
        "healthy",
        "in_flight",
        "name",
        "pool",
        "removed",
        "service",
        "shard",
    )

    def __init__(
        self,
        name: str,
        service: str,
        endpoint: Endpoint,
        pool: ConnectionPool,
        shard: int | None = None,
    ) -> None:
        self.name = name
        self.service = service
        self.endpoint = endpoint
        self.pool = pool
        # The shard this instance serves; None for an unsharded service.
        self.shard = shard
        # Requests sent and not yet answered; the dispatcher increments before sending
        # and decrements in `finally`, so it is exact.
        self.in_flight = 0
        # New instances get no traffic until a health check has passed.
        self.healthy = False
        self.failures = 0
        self.removed = False

    def __repr__(self) -> str:
        state = "healthy" if self.healthy else "unhealthy"
        shard = "" if self.shard is None else f" shard={self.shard}"
        return (
            f"<Instance {self.name}{shard} {self.endpoint.url} {state} in_flight={self.in_flight}>"
        )


class Candidates:
    """The instances one request may go to (a whole service's, or one shard's), and the
    least-busy choice among the healthy ones.

    A service keeps the same object for a shard for as long as the topology lists that
    shard, so an `Exchange` holding one (to retry on another instance) always sees
    current health.
    """

    __slots__ = ("_turn", "healthy", "instances", "shard")

    def __init__(self, shard: int | None = None) -> None:
        # None: every instance of the service, whatever its shard.
        self.shard = shard
        self.instances: list[Instance] = []
        self.healthy: list[Instance] = []
        self._turn = 0

    def choose(self, exclude: Instance | None = None) -> Instance | None:
        """The healthy instance with the fewest requests in flight, or None."""
        candidates = self.healthy
        count = len(candidates)
        if count == 1:
            only = candidates[0]
            return None if only is exclude else only
        if count == 0:
            return None
        start = self._turn = (self._turn + 1) % count
        best: Instance | None = None
        best_load = 1 << 62
        for offset in range(count):
            candidate = candidates[(start + offset) % count]
            load = candidate.in_flight
            if load < best_load and candidate is not exclude:
                best = candidate
                best_load = load
                if load == 0:
                    break  # nobody is less busy than idle
        return best

    def refresh(self) -> None:
        self.healthy = [i for i in self.instances if i.healthy and not i.removed]


class Service:
    """The instances of one service, grouped by shard when they carry one."""

    __slots__ = ("_groups", "everyone", "instances", "name", "shard_count", "shards")

    def __init__(self, name: str) -> None:
        self.name = name
        self.instances: dict[str, Instance] = {}
        # Every instance, whatever its shard: unsharded routes, the OpenAPI fetch.
        self.everyone = Candidates()
        # Indexed by shard number, 0 .. shard_count - 1; None for a number no instance
        # in the topology serves. Empty for an unsharded service.
        self.shards: tuple[Candidates | None, ...] = ()
        # N, the number of shards: one more than the highest shard the topology lists
        # (so a shard missing from the topology leaves a gap rather than renumbering
        # everyone's home shard); 0 when no instance carries a shard.
        self.shard_count = 0
        self._groups: dict[int, Candidates] = {}

    @property
    def healthy(self) -> list[Instance]:
        return self.everyone.healthy

    @property
    def sharded(self) -> bool:
        return self.shard_count > 0

    def choose(self, exclude: Instance | None = None) -> Instance | None:
        """The least busy healthy instance of any shard, or None."""
        return self.everyone.choose(exclude)

    def shard(self, number: int) -> Candidates | None:
        """The instances of shard `number`, or None when the topology lists none."""
        return self.shards[number] if 0 <= number < self.shard_count else None

    def rebuild(self) -> None:
        """Group the instances by shard again, after one joined or left."""
        members = list(self.instances.values())
        self.everyone.instances = members
        groups = self._groups
        for emptied in groups.values():
            emptied.instances = []
        unsharded = 0
        for instance in members:
            number = instance.shard
            if number is None:
                unsharded += 1
                continue
            group = groups.get(number)
            if group is None:
                group = groups[number] = Candidates(number)
            group.instances.append(instance)
        for number in [n for n, group in groups.items() if not group.instances]:
            groups.pop(number).healthy = []  # an Exchange may still hold it: empty it
        count = max(groups) + 1 if groups else 0
        self.shards = tuple(groups.get(number) for number in range(count))
        self.shard_count = count
        if count and unsharded:
            _log.warning(
                "instances without a shard get no sharded traffic",
                **{"upstream.service": self.name},
                count=unsharded,
            )
        self.refresh()

    def refresh(self, instance: Instance | None = None) -> None:
        """Rebuild the healthy lists: all of them, or those `instance` is in."""
        self.everyone.refresh()
        if instance is not None:
            group = self._groups.get(instance.shard) if instance.shard is not None else None
            if group is not None:
                group.refresh()
            return
        for group in self._groups.values():
            group.refresh()


class Registry:
    """Every routed service and its instances; wakes waiters on every change or check."""

    def __init__(
        self,
        pool_factory: Callable[[Endpoint], ConnectionPool],
        *,
        unhealthy_after: int,
        services: tuple[str, ...] = (),
    ) -> None:
        self._pool_factory = pool_factory
        self._unhealthy_after = unhealthy_after
        self.services: dict[str, Service] = {name: Service(name) for name in services}
        # Bumped on every membership or health change; caches compare it.
        self.generation = 0
        self._changed = asyncio.Event()

    def service(self, name: str) -> Service:
        found = self.services.get(name)
        if found is None:
            found = self.services[name] = Service(name)
        return found

    def instances(self) -> Iterator[Instance]:
        for service in self.services.values():
            yield from service.instances.values()

    def add(self, service_name: str, name: str, url: str, shard: int | None = None) -> Instance:
        service = self.service(service_name)
        if name in service.instances:
            raise ValueError(f"instance {name!r} of {service_name!r} already exists")
        if shard is not None and not 0 <= shard < MAX_SHARDS:
            raise ValueError(f"instance {name!r} of {service_name!r}: bad shard {shard}")
        endpoint = Endpoint.parse(url)
        instance = Instance(name, service_name, endpoint, self._pool_factory(endpoint), shard)
        service.instances[name] = instance
        service.rebuild()
        self._notify()
        return instance

    def remove(self, service_name: str, name: str) -> Instance | None:
        """Take an instance out: no new requests; requests in flight finish."""
        service = self.services.get(service_name)
        instance = service.instances.pop(name, None) if service else None
        if service is None or instance is None:
            return None
        instance.removed = True
        service.rebuild()
        instance.pool.close()
        self._notify()
        return instance

    def record_check(self, instance: Instance, ok: bool) -> None:
        """A health check result: healthy at once, unhealthy after enough failures."""
        if instance.removed:
            return
        if ok:
            instance.failures = 0
            changed = not instance.healthy
            instance.healthy = True
        else:
            instance.failures += 1
            changed = instance.healthy and instance.failures >= self._unhealthy_after
            if changed:
                instance.healthy = False
        if changed:
            self.service(instance.service).refresh(instance)
            _log.info(
                "instance health changed",
                **{"upstream.instance": instance.name, "upstream.healthy": instance.healthy},
            )
        self._notify(changed=changed)

    def close(self, *, abort: bool = False) -> None:
        """Close every pool; `abort` also cuts requests still in progress."""
        for instance in self.instances():
            if abort:
                instance.pool.abort()
            else:
                instance.pool.close()

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Return once `predicate()` holds; it is re-checked on every change and check."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self._changed.wait()

    def _notify(self, *, changed: bool = True) -> None:
        # Waiters wake on every check result; caches only on a change of state.
        if changed:
            self.generation += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()
