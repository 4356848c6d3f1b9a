"""Rate limits: GCRA token buckets per identity and per client IP.

GCRA (the generic cell rate algorithm) is a token bucket kept as one number per key: the
theoretical arrival time (TAT) of the next request if the client sent at exactly the
allowed rate. A request at `now` is allowed when `max(TAT, now) + interval - now` stays
within `burst * interval`; the TAT then moves on by one interval. A key whose TAT is in
the past has a full bucket, so forgetting it changes nothing: that is what makes idle
buckets free to evict.

In process, a check is a dict lookup and a few float operations, with no await. When
`valkey_url` is set, buckets live in Valkey (or Redis) so that every gateway instance
draws from the same budget: the same algorithm runs there as one Lua script (EVALSHA),
on the server's clock. If Valkey cannot be reached, the gateway falls back to its own
buckets for a while and says so once in the log: a limiter outage must not become a
gateway outage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Literal

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from flotilla_gateway.problems import ProblemCatalog, ProblemTemplate
from flotilla_kit.logs import get_logger

__all__ = [
    "IDENTITY",
    "IP",
    "Outcome",
    "RateLimit",
    "RateLimiter",
    "SharedBuckets",
    "parse_route_key",
]

_log = get_logger("flotilla.gateway.rate_limits")

IDENTITY: Literal["identity"] = "identity"
IP: Literal["ip"] = "ip"
LimitKind = Literal["identity", "ip"]

# (allowed, remaining, seconds): `seconds` is until the bucket is full again when
# allowed, and until the next request would be allowed when refused.
Outcome = tuple[bool, int, float]

# Float error in `capacity - ahead` must not cost a client its last token.
_EPSILON = 1e-9


class RateLimit:
    """One limit (rate, burst) of one kind, with the in-process buckets of its keys.

    `scope` is empty for the gateway-wide default and `METHOD /template` for a route's
    own limit, whose buckets are separate from the default's.
    """

    __slots__ = (
        "_tats",
        "burst",
        "capacity",
        "interval",
        "kind",
        "label",
        "max_keys",
        "policy_item",
        "problem",
        "rps",
        "scope",
        "shared_prefix",
    )

    def __init__(
        self,
        kind: LimitKind,
        rps: float,
        burst: int,
        *,
        scope: str = "",
        max_keys: int = 100_000,
        problem: ProblemTemplate | None = None,
    ) -> None:
        if rps <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("a rate limit needs rps > 0, burst >= 1 and max_keys >= 1")
        self.kind = kind
        self.rps = rps
        self.burst = burst
        self.scope = scope
        self.max_keys = max_keys
        self.interval = 1.0 / rps
        self.capacity = burst * self.interval
        # Seconds a drained bucket takes to fill again, as the header's integer window.
        window = max(1, math.ceil(self.capacity - _EPSILON))
        # The policy's name in the headers, as a structured-field string.
        self.label = b'"%b"' % kind.encode("ascii")
        self.policy_item = b"%b;q=%d;w=%d" % (self.label, burst, window)
        self.shared_prefix = f"flotilla:rl:{kind}:{scope}:"
        self.problem = problem
        self._tats: dict[str, float] = {}

    @property
    def keys_held(self) -> int:
        """How many keys have a bucket in process (for tests and debugging)."""
        return len(self._tats)

    def take(self, key: str, now: float) -> Outcome:
        """Spend one token of `key`'s bucket at `now` (seconds, monotonic) if it has one."""
        tats = self._tats
        tat = tats.get(key)
        if tat is None:
            if len(tats) >= self.max_keys:
                self._evict(now)
            tat = now
        elif tat < now:
            tat = now
        ahead = tat + self.interval - now
        capacity = self.capacity
        if ahead > capacity + _EPSILON:
            return (False, 0, ahead - capacity)
        tats[key] = tat + self.interval
        return (True, int((capacity - ahead) / self.interval + _EPSILON), ahead)

    def _evict(self, now: float) -> None:
        """Make room: drop full buckets, then, if that is not enough, the oldest keys.

        Runs when the table is full, so its cost is spread over the insertions that
        filled it. Dropping a key that still owes tokens gives it a fresh bucket: the
        price of bounded memory under a flood of distinct keys.
        """
        tats = self._tats
        idle = [key for key, tat in tats.items() if tat <= now]
        for key in idle:
            del tats[key]
        if len(tats) >= self.max_keys:
            # Insertion order: the keys seen first go first.
            for key in list(islice(tats, max(1, self.max_keys // 4))):
                del tats[key]


def parse_route_key(key: str) -> tuple[str, str]:
    """`"POST /api/v1/auth/token"` -> `("POST", "/api/v1/auth/token")`."""
    method, _, path = key.strip().partition(" ")
    path = path.strip()
    if not method or not path.startswith("/"):
        raise ValueError(f"a route limit key is 'METHOD /path/template', not {key!r}")
    return method.upper(), path


# KEYS[1]: the bucket; ARGV: interval, capacity (seconds, as text). Floats cross the
# Lua boundary as integers, so results come back as strings.
_GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local ahead = tat + interval - now
if ahead > capacity + 1e-9 then
  return {0, tostring(ahead - capacity)}
end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(ahead * 1000))
return {1, tostring(ahead)}
"""


class SharedBuckets:
    """Buckets in Valkey, shared by every gateway pointed at the same server.

    Any failure (refused, timed out, script error) answers from the limit's in-process
    buckets instead, and Valkey is not asked again for `retry_after_s`, so an outage
    costs one timeout per `retry_after_s`, not one per request.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        retry_after_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._script = self._client.register_script(_GCRA_SCRIPT)
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._down_until = 0.0
        self._down = False

    async def take(self, limit: RateLimit, key: str) -> Outcome:
        now = self._clock()
        if now < self._down_until:
            return limit.take(key, now)
        try:
            allowed, seconds = await self._script(
                keys=[limit.shared_prefix + key],
                args=[repr(limit.interval), repr(limit.capacity)],
            )
        except Exception as error:  # fail open, whatever went wrong
            self._down_until = now + self._retry_after_s
            if not self._down:
                self._down = True
                _log.warning(
                    "valkey unreachable; rate limits are per gateway until it answers",
                    error=repr(error),
                )
            return limit.take(key, now)
        if self._down:
            self._down = False
            _log.info("valkey answers again; rate limits are shared")
        wait = float(seconds)
        if int(allowed) == 1:
            return (True, int((limit.capacity - wait) / limit.interval + 1e-9), wait)
        return (False, 0, wait)

    async def close(self) -> None:
        await self._client.aclose()


class RateLimiter:
    """The limits of every route, and where their buckets live."""

    def __init__(
        self,
        *,
        identity: RateLimit,
        ip: RateLimit,
        routes: Mapping[tuple[str, str], RateLimit],
        shared: SharedBuckets | None = None,
        clock: Callable[[], float] = time.monotonic,
        exempt_roles: frozenset[str] = frozenset(),
    ) -> None:
        self.identity = identity
        self.ip = ip
        self.routes = dict(routes)
        self.shared = shared
        self.clock = clock
        # Holders of these roles are not limited per identity (the per-IP limit stays).
        self.exempt_roles = exempt_roles

    @classmethod
    def build(
        cls,
        *,
        problems: ProblemCatalog,
        identity: tuple[float, int],
        ip: tuple[float, int],
        routes: Mapping[str, tuple[float, int]],
        max_keys: int,
        shared: SharedBuckets | None = None,
        public: Callable[[str, str], bool | None],
        exempt_roles: frozenset[str] = frozenset(),
    ) -> RateLimiter:
        """Limits from settings; `public(method, path)` says whether a policy entry is
        public, or None when there is no such entry (a typo must not pass silently)."""
        by_route: dict[tuple[str, str], RateLimit] = {}
        for key, (rps, burst) in routes.items():
            method, path = parse_route_key(key)
            is_public = public(method, path)
            if is_public is None:
                raise ValueError(f"rate_limit_routes names no policy entry: {key!r}")
            kind: LimitKind = IP if is_public else IDENTITY
            by_route[(method, path)] = cls._limit(
                problems, kind, rps, burst, scope=f"{method} {path}", max_keys=max_keys
            )
        return cls(
            identity=cls._limit(problems, IDENTITY, *identity, max_keys=max_keys),
            ip=cls._limit(problems, IP, *ip, max_keys=max_keys),
            routes=by_route,
            shared=shared,
            exempt_roles=exempt_roles,
        )

    @staticmethod
    def _limit(
        problems: ProblemCatalog,
        kind: LimitKind,
        rps: float,
        burst: int,
        *,
        scope: str = "",
        max_keys: int,
    ) -> RateLimit:
        return RateLimit(
            kind,
            rps,
            burst,
            scope=scope,
            max_keys=max_keys,
            problem=problems.rate_limited(kind, rps, burst, scope),
        )

    def limits_for(
        self, method: str, path: str, *, public: bool
    ) -> tuple[RateLimit | None, RateLimit | None]:
        """(per IP, per identity) for a policy entry; a public entry has no identity limit."""
        own = self.routes.get((method, path))
        if public:
            return (self.ip if own is None else own, None)
        return (self.ip, self.identity if own is None else own)

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close()
