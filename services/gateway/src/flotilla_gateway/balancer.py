"""Upstream instances, their health and load, and the choice of one per request.

Each `Service` keeps ready-made lists of its available instances (healthy, not ejected),
rebuilt only when health or membership changes. An instance's load is its requests in
flight weighted by health: times `1 + penalty`, where the penalty counts recent failures
and the slow start after a re-admission. The choice is power of two choices: the next
instance in turn and one other picked at random; the less loaded wins, the one in turn
on a tie, so an idle service still spreads its traffic evenly (an idle instance has no
load, penalty or not, so a suspect instance keeps getting some traffic and the passive
checks can clear or eject it). With one or two instances that is the same as scanning
for the least loaded.

Passive outlier ejection: after `eject_after` consecutive failures (connect errors,
resets, timeouts, 5xx answers) an instance is taken out for a cool-down that doubles on
repeat, then re-admitted with a slow-start penalty. Each `Service` also has a circuit
`Breaker` and a `RetryBudget`.

A sharded service (its instances carry a `shard` in the topology) also keeps one such
list per shard, indexed by shard number, so a request whose shard is known picks among
that shard's instances only, at the same cost.
"""

from __future__ import annotations

import asyncio
import math
import random
from bisect import bisect_left
from collections.abc import Callable, Iterator
from time import monotonic

from flotilla_gateway.settings import Resilience
from flotilla_gateway.upstream import ConnectionPool, Endpoint
from flotilla_kit.logs import get_logger

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "LATENCY_BUCKETS",
    "OPEN",
    "Breaker",
    "Candidates",
    "Instance",
    "Registry",
    "RetryBudget",
    "Service",
]

_log = get_logger("flotilla.gateway.balancer")

# Account ids spell their shard in at most three digits (`flotilla_kit.sharding`).
MAX_SHARDS = 1000
# The most a health penalty multiplies an instance's load by is 1 + this.
MAX_PENALTY = 16
# Retry tokens saved up at most (with ratio 0.2: what 500 requests deposit).
_BUDGET_CAP = 100.0
# One retry token, less the float noise of adding up deposits (0.2 * 5 < 1.0).
_ONE = 1.0 - 1e-9

# A proxy hop on loopback takes well under a millisecond; upstream work adds the rest.
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

_random = random.random

# Breaker states, as the `flotilla_gateway_upstream_breaker_state` gauge shows them.
CLOSED = 0
HALF_OPEN = 1
OPEN = 2


class Instance:
    """One instance of a service, as the gateway sees it."""

    __slots__ = (
        "admitted",
        "answered",
        "eject_streak",
        "ejected",
        "ejections",
        "endpoint",
        "errors",
        "failed",
        "failures",
        "healthy",
        "in_flight",
        "latency_buckets",
        "latency_sum",
        "name",
        "penalty",
        "pool",
        "readmitted_at",
        "removed",
        "server_errors",
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
        # Requests sent and not yet answered: the dispatcher increments it before sending
        # and decrements it in both of the exchange's endings (`upstream_response`,
        # `upstream_failed`), one of which every sent request reaches.
        self.in_flight = 0
        # New instances get no traffic until a health check has passed.
        self.healthy = False
        # Consecutive failed health checks.
        self.failures = 0
        self.removed = False
        # Has been healthy once: later admissions are re-admissions (slow start).
        self.admitted = False
        # Its requests in flight count `1 + penalty` times: recent failures and slow
        # start; one point is forgiven per passed health check.
        self.penalty = 0
        # Consecutive failed requests (passive checks); reset by any good answer.
        self.errors = 0
        self.ejected = False
        self.ejections = 0
        self.eject_streak = 0
        self.readmitted_at = -math.inf
        # Per-instance request metrics, read at scrape time.
        self.answered = 0
        self.failed = 0
        # Of the answered: those with a 5xx status.
        self.server_errors = 0
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def observe(self, seconds: float, *, answered: bool) -> None:
        """One attempt on this instance ended: with a response, or without one."""
        if answered:
            self.answered += 1
        else:
            self.failed += 1
        self.latency_buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    @property
    def available(self) -> bool:
        """Gets new requests: healthy, not ejected, still in the topology."""
        return self.healthy and not self.ejected and not self.removed

    def __repr__(self) -> str:
        state = "ejected" if self.ejected else "healthy" if self.healthy else "unhealthy"
        shard = "" if self.shard is None else f" shard={self.shard}"
        return (
            f"<Instance {self.name}{shard} {self.endpoint.url} {state} in_flight={self.in_flight}>"
        )


def _less_loaded(first: Instance, second: Instance) -> Instance:
    """`second` if its weighted load is lower, else `first` (ties go to the first)."""
    if second.in_flight * (1 + second.penalty) < first.in_flight * (1 + first.penalty):
        return second
    return first


class Breaker:
    """The circuit breaker of one upstream service, or of one shard of a sharded one.

    Closed: every request goes through. It opens when `consecutive` attempts in a row
    failed, or when more than `ratio` of the attempts in the current window (of
    `window_s`, at least `min_requests` attempts) failed. Open: requests are refused
    (503) for `open_s`. Then half-open: one probe request goes through; its success
    closes the breaker, its failure opens it again. If the probe never reports (it found
    no instance), another is let through after `open_s`.
    """

    __slots__ = (
        "_consecutive",
        "_failures",
        "_min_requests",
        "_open_s",
        "_ratio",
        "_requests",
        "_window_end",
        "_window_s",
        "consecutive_failures",
        "opened",
        "reopen_at",
        "state",
    )

    def __init__(
        self,
        *,
        window_s: float = 10.0,
        min_requests: int = 20,
        ratio: float = 0.5,
        consecutive: int = 20,
        open_s: float = 5.0,
    ) -> None:
        self._window_s = window_s
        self._min_requests = min_requests
        self._ratio = ratio
        self._consecutive = consecutive
        self._open_s = open_s
        self.state = CLOSED
        self.consecutive_failures = 0
        self._requests = 0
        self._failures = 0
        self._window_end = 0.0
        # Open: when the next probe may go; half-open: when a lost probe is replaced.
        self.reopen_at = 0.0
        # Times the breaker opened.
        self.opened = 0

    def admit(self) -> bool:
        """For a breaker that is not closed: may this request go through (as the probe)?"""
        now = monotonic()
        if now < self.reopen_at:
            return False
        self.state = HALF_OPEN
        self.reopen_at = now + self._open_s
        return True

    def retry_after(self) -> int:
        """Whole seconds until a request may go through again, at least 1."""
        return max(1, math.ceil(self.reopen_at - monotonic()))

    def record(self, ok: bool) -> None:
        """The outcome of one attempt on an instance of the service."""
        now = monotonic()
        if now >= self._window_end:
            self._window_end = now + self._window_s
            self._requests = self._failures = 0
        self._requests += 1
        if ok:
            self.consecutive_failures = 0
            if self.state != CLOSED:
                self.state = CLOSED
                _log.info("circuit closed")
            return
        self._failures += 1
        self.consecutive_failures += 1
        if self.state == HALF_OPEN or (
            self.state == CLOSED
            and (
                self.consecutive_failures >= self._consecutive
                or (
                    self._requests >= self._min_requests
                    and self._failures > self._ratio * self._requests
                )
            )
        ):
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = OPEN
        self.opened += 1
        self.reopen_at = now + self._open_s
        self._requests = self._failures = 0
        _log.warning("circuit opened", open_s=self._open_s)


class Candidates:
    """The instances one request may go to (a whole service's, or one shard's), the
    least-busy choice among the healthy ones, and their circuit breaker.

    A service keeps the same object for a shard for as long as the topology lists that
    shard, so an `Exchange` holding one (to retry on another instance) always sees
    current health. The breaker is per group, so one shard failing does not stop the
    traffic of the others.
    """

    __slots__ = ("_turn", "breaker", "healthy", "instances", "shard")

    def __init__(self, shard: int | None = None, breaker: Breaker | None = None) -> None:
        # None: every instance of the service, whatever its shard.
        self.shard = shard
        self.breaker = breaker if breaker is not None else Breaker()
        self.instances: list[Instance] = []
        self.healthy: list[Instance] = []
        self._turn = 0

    def choose(self, exclude: Instance | None = None) -> Instance | None:
        """The less loaded of two available instances (P2C), or None.

        Load is requests in flight times `1 + penalty` (health). The first candidate is the
        next one in turn, the second a random other one; a tie goes to the first.
        """
        candidates = self.healthy
        count = len(candidates)
        if count == 1:
            only = candidates[0]
            return None if only is exclude else only
        if count < 3:
            return self._choose_of_two(candidates, exclude) if count else None
        start = self._turn = (self._turn + 1) % count
        first = candidates[start]
        if first is exclude:
            start = (start + 1) % count
            first = candidates[start]
        other = (start + 1 + int(_random() * (count - 1))) % count
        second = candidates[other]
        if second is exclude:
            other = (other + 1) % count
            if other == start:
                other = (other + 1) % count
            second = candidates[other]
        return _less_loaded(first, second)

    def _choose_of_two(self, candidates: list[Instance], exclude: Instance | None) -> Instance:
        a, b = candidates
        if a is exclude:
            return b  # a retry: the other one, without moving the turn on
        if b is exclude:
            return a
        self._turn = turn = (self._turn + 1) % 2
        return _less_loaded(b, a) if turn else _less_loaded(a, b)

    def refresh(self) -> None:
        self.healthy = [i for i in self.instances if i.available]


class RetryBudget:
    """Retries of one service, at most about `ratio` of its requests.

    A token bucket: each request deposits `ratio` tokens (up to a cap of 100), each retry
    withdraws one. When the bucket is empty, a reserve refilled at `min_per_s` still
    allows a few retries per second, so a quiet service can retry at all.
    """

    __slots__ = ("_last", "_min_per_s", "_reserve", "balance", "exhausted", "ratio")

    def __init__(self, *, ratio: float = 0.2, min_per_s: float = 3.0) -> None:
        self.ratio = ratio
        self.balance = 0.0
        self._min_per_s = min_per_s
        self._reserve = min_per_s
        self._last = monotonic()
        # Retries refused because the budget was used up.
        self.exhausted = 0

    def deposit(self) -> None:
        if self.balance < _BUDGET_CAP:
            self.balance += self.ratio

    def withdraw(self) -> bool:
        """Take one retry from the budget; False (and counted) when there is none."""
        if self.balance >= _ONE:
            self.balance -= 1.0
            return True
        now = monotonic()
        rate = self._min_per_s
        self._reserve = min(rate, self._reserve + (now - self._last) * rate)
        self._last = now
        if self._reserve >= 1.0:
            self._reserve -= 1.0
            return True
        self.exhausted += 1
        return False


class Service:
    """The instances of one service, grouped by shard when they carry one."""

    __slots__ = (
        "_groups",
        "_knobs",
        "everyone",
        "instances",
        "name",
        "retry_budget",
        "shard_count",
        "shards",
    )

    def __init__(self, name: str, resilience: Resilience | None = None) -> None:
        self.name = name
        knobs = self._knobs = resilience or Resilience()
        self.retry_budget = RetryBudget(
            ratio=knobs.retry_budget_ratio, min_per_s=knobs.retry_budget_min_per_s
        )
        self.instances: dict[str, Instance] = {}
        # Every instance, whatever its shard: unsharded routes, the OpenAPI fetch.
        self.everyone = Candidates(breaker=self._breaker())
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
    def breaker(self) -> Breaker:
        """The breaker of the unsharded routes (for a sharded service, see `groups`)."""
        return self.everyone.breaker

    def groups(self) -> list[Candidates]:
        """Every group with a breaker: the whole service, then each shard in order."""
        return [self.everyone, *(g for g in self.shards if g is not None)]

    def _breaker(self) -> Breaker:
        knobs = self._knobs
        return Breaker(
            window_s=knobs.breaker_window_s,
            min_requests=knobs.breaker_min_requests,
            ratio=knobs.breaker_failure_ratio,
            consecutive=knobs.breaker_consecutive_failures,
            open_s=knobs.breaker_open_s,
        )

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
                group = groups[number] = Candidates(number, self._breaker())
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

    def group_of(self, instance: Instance) -> Candidates:
        """The list `instance` is chosen from: its shard's, or the whole service's."""
        if instance.shard is not None:
            group = self._groups.get(instance.shard)
            if group is not None:
                return group
        return self.everyone

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
        resilience: Resilience | None = None,
    ) -> None:
        self._pool_factory = pool_factory
        self._unhealthy_after = unhealthy_after
        self.resilience = resilience or Resilience()
        self.services: dict[str, Service] = {
            name: Service(name, self.resilience) for name in services
        }
        # Bumped on every membership or health change; caches compare it.
        self.generation = 0
        self._changed = asyncio.Event()

    def service(self, name: str) -> Service:
        found = self.services.get(name)
        if found is None:
            found = self.services[name] = Service(name, self.resilience)
        return found

    def instances(self) -> Iterator[Instance]:
        for service in self.services.values():
            yield from service.instances.values()

    def add(
        self,
        service_name: str,
        name: str,
        url: str,
        shard: int | None = None,
        *,
        tls_name: str | None = None,
    ) -> Instance:
        """A new instance; `tls_name` is the name its certificate is checked against (and
        sent as SNI) when it is not the URL's host (a pod IP found through DNS)."""
        service = self.service(service_name)
        if name in service.instances:
            raise ValueError(f"instance {name!r} of {service_name!r} already exists")
        if shard is not None and not 0 <= shard < MAX_SHARDS:
            raise ValueError(f"instance {name!r} of {service_name!r}: bad shard {shard}")
        endpoint = Endpoint.parse(url, server_name=tls_name)
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

    def record_check(self, instance: Instance, ok: bool, *, draining: bool = False) -> None:
        """A health check result: healthy at once; unhealthy after enough failures, or at
        once when the instance said it is draining."""
        if instance.removed:
            return
        if ok:
            instance.failures = 0
            changed = not instance.healthy
            instance.healthy = True
            if changed and instance.admitted:
                # Back after being taken out: a slow start.
                instance.penalty = max(instance.penalty, self.resilience.slow_start_checks)
            elif instance.penalty:
                instance.penalty -= 1
            instance.admitted = True
        else:
            instance.failures += 1
            changed = instance.healthy and (draining or instance.failures >= self._unhealthy_after)
            if changed:
                instance.healthy = False
        if changed:
            self.service(instance.service).refresh(instance)
            _log.info(
                "instance health changed",
                **{"upstream.instance": instance.name, "upstream.healthy": instance.healthy},
            )
        self._notify(changed=changed)

    def failed(self, instance: Instance) -> None:
        """A request to `instance` failed (passive check); eject it after enough in a row.

        The dispatcher resets `instance.errors` itself on a good answer.
        """
        instance.errors += 1
        if instance.penalty < MAX_PENALTY:
            instance.penalty += 1
        knobs = self.resilience
        if instance.ejected or instance.removed:
            return
        if instance.errors < knobs.outlier_consecutive_failures:
            return
        service = self.service(instance.service)
        group = service.group_of(instance)
        if instance.healthy and len(group.healthy) <= 1:
            return  # the last one standing: ejecting it would only turn errors into 503s
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Failing again soon after a re-admission: twice the last cool-down.
        last = min(knobs.outlier_ejection_s * 2**instance.eject_streak, knobs.longest_ejection_s)
        if instance.ejections and now - instance.readmitted_at < 2 * last:
            instance.eject_streak += 1
        else:
            instance.eject_streak = 0
        cool_down = min(
            knobs.outlier_ejection_s * 2**instance.eject_streak, knobs.longest_ejection_s
        )
        instance.ejected = True
        instance.ejections += 1
        service.refresh(instance)
        _log.warning(
            "instance ejected",
            **{"upstream.instance": instance.name},
            errors=instance.errors,
            cool_down_s=cool_down,
        )
        loop.call_later(cool_down, self._readmit, instance)
        self._notify()

    def _readmit(self, instance: Instance) -> None:
        if instance.removed or not instance.ejected:
            return
        instance.ejected = False
        instance.errors = 0
        instance.penalty = max(instance.penalty, self.resilience.slow_start_checks)
        instance.readmitted_at = asyncio.get_running_loop().time()
        self.service(instance.service).refresh(instance)
        _log.info("instance re-admitted", **{"upstream.instance": instance.name})
        self._notify()

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
