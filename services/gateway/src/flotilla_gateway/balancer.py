"""Upstream instances, their health and load, and the choice of one per request.

Each `Service` keeps a ready-made list of its healthy instances, rebuilt only when health
or membership changes, so choosing costs one pass over a short list. The choice is the
instance with the fewest requests in flight; ties go to the first one found from a start
point that moves on every call, so an idle service still spreads its traffic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from flotilla_gateway.upstream import ConnectionPool, Endpoint
from flotilla_kit.logs import get_logger

__all__ = ["Instance", "Registry", "Service"]

_log = get_logger("flotilla.gateway.balancer")


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
    )

    def __init__(self, name: str, service: str, endpoint: Endpoint, pool: ConnectionPool) -> None:
        self.name = name
        self.service = service
        self.endpoint = endpoint
        self.pool = pool
        # Requests sent and not yet answered; the dispatcher increments before sending
        # and decrements in `finally`, so it is exact.
        self.in_flight = 0
        # New instances get no traffic until a health check has passed.
        self.healthy = False
        self.failures = 0
        self.removed = False

    def __repr__(self) -> str:
        state = "healthy" if self.healthy else "unhealthy"
        return f"<Instance {self.name} {self.endpoint.url} {state} in_flight={self.in_flight}>"


class Service:
    """The instances of one service and the least-busy choice among the healthy ones."""

    __slots__ = ("_healthy", "_turn", "instances", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.instances: dict[str, Instance] = {}
        self._healthy: list[Instance] = []
        self._turn = 0

    @property
    def healthy(self) -> list[Instance]:
        return self._healthy

    def choose(self, exclude: Instance | None = None) -> Instance | None:
        """The healthy instance with the fewest requests in flight, or None."""
        candidates = self._healthy
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
        self._healthy = [i for i in self.instances.values() if i.healthy and not i.removed]


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

    def add(self, service_name: str, name: str, url: str) -> Instance:
        service = self.service(service_name)
        if name in service.instances:
            raise ValueError(f"instance {name!r} of {service_name!r} already exists")
        endpoint = Endpoint.parse(url)
        instance = Instance(name, service_name, endpoint, self._pool_factory(endpoint))
        service.instances[name] = instance
        self._notify()
        return instance

    def remove(self, service_name: str, name: str) -> Instance | None:
        """Take an instance out: no new requests; requests in flight finish."""
        service = self.services.get(service_name)
        instance = service.instances.pop(name, None) if service else None
        if service is None or instance is None:
            return None
        instance.removed = True
        service.refresh()
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
            self.service(instance.service).refresh()
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
