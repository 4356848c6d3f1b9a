"""Active health checks: `GET /readyz` on every instance, every `interval_s`; a healthy
instance that got no request since its last check is checked every `idle_interval_s`
instead (Envoy's `no_traffic_interval`): a gateway at rest costs its instances almost
nothing, and a request that cannot reach an instance still gets it checked at once.

Each instance gets its own probe loop and its own one-connection pool, so a slow or dead
instance delays nobody else's checks, and checks do not take connections from the
request pools. A probe loop starts with an immediate check (new instances get traffic as
soon as they are ready) and can be woken early when a request saw the instance fail.

An instance that answers 503 `draining` (it got SIGTERM and is shutting down) is taken
out at once, without waiting for `unhealthy_after` failed checks: it still serves what
it gets, but will stop accepting soon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from flotilla_gateway.balancer import Instance, Registry
from flotilla_gateway.errors import UpstreamError
from flotilla_gateway.upstream import ConnectionPool, Endpoint
from flotilla_kit.logs import get_logger
from flotilla_kit.problems import problem_type

__all__ = ["HealthChecker"]

_log = get_logger("flotilla.gateway.health")
_PROBE_LINE = b"GET /readyz HTTP/1.1\r\n"
_PROBE_FIELDS = b"user-agent: flotilla-gateway\r\naccept: application/json\r\n\r\n"
_DRAINING = problem_type("draining")
# What a probe found.
OK, FAILING, DRAINING = "ok", "failing", "draining"


class HealthChecker:
    def __init__(
        self,
        registry: Registry,
        pool_factory: Callable[[Endpoint], ConnectionPool],
        *,
        interval_s: float,
        timeout_s: float,
        idle_interval_s: float | None = None,
    ) -> None:
        self._registry = registry
        self._pool_factory = pool_factory
        self._interval_s = interval_s
        self._idle_interval_s = max(interval_s, idle_interval_s or interval_s)
        # After a failure of a still-healthy instance, confirm or clear it quickly.
        self._suspect_interval_s = min(interval_s, 0.25)
        self._timeout_s = timeout_s
        self._probes: dict[Instance, tuple[asyncio.Task[None], asyncio.Event]] = {}

    def watch(self, instance: Instance) -> None:
        wake = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            self._probe_loop(instance, wake), name=f"health {instance.name}"
        )
        self._probes[instance] = (task, wake)

    def unwatch(self, instance: Instance) -> None:
        probe = self._probes.pop(instance, None)
        if probe is not None:
            probe[0].cancel()

    def suspect(self, instance: Instance) -> None:
        """A request could not reach the instance: check it now rather than at the next tick."""
        probe = self._probes.get(instance)
        if probe is not None:
            probe[1].set()

    async def close(self) -> None:
        tasks = [task for task, _ in self._probes.values()]
        self._probes.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _probe_loop(self, instance: Instance, wake: asyncio.Event) -> None:
        pool = self._pool_factory(instance.endpoint)
        used = -1  # attempts on the instance at the last check
        try:
            while True:
                wake.clear()
                found = await self._probe(pool, instance)
                ok = found == OK
                self._registry.record_check(instance, ok, draining=found == DRAINING)
                suspect = not ok and instance.healthy
                idle = ok and instance.answered + instance.failed == used
                used = instance.answered + instance.failed
                if suspect:
                    delay = self._suspect_interval_s
                elif idle:
                    delay = self._idle_interval_s
                else:
                    delay = self._interval_s
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wake.wait()
        finally:
            pool.abort()

    async def _probe(self, pool: ConnectionPool, instance: Instance) -> str:
        try:
            response = await pool.request(_PROBE_LINE, _PROBE_FIELDS, timeout_s=self._timeout_s)
        except UpstreamError as error:
            _log.debug(
                "health check failed", **{"upstream.instance": instance.name}, error=str(error)
            )
            return FAILING
        if response.status == 200:
            return OK
        if response.status == 503 and _is_draining(response.body):
            return DRAINING
        return FAILING


def _is_draining(body: bytes) -> bool:
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("type") == _DRAINING
