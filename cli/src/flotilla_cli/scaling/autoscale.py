"""The autoscaler of `flotilla up --autoscale`: a loop inside the supervisor that, every
`interval_s`, reads the gateways' load (`gateway_metrics`), asks the HPA's rule (`hpa`) what
each service (each ledger shard) should have, records the decision in the state and has
the supervisor carry out a change.

It needs of the supervisor only what `ScalableSystem` names, so that it can be read (and
tested) on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Literal, Protocol

import httpx

from flotilla_cli.launcher.state import AutoscaleSettings, ScalingEvent, SystemState
from flotilla_cli.scaling import gateway_metrics
from flotilla_cli.scaling.hpa import DEFAULT_BEHAVIOR, Behavior, History, Rules, decide
from flotilla_cli.scaling.requests import ScaleError, group_name

__all__ = ["ScalableSystem", "autoscale", "autoscale_round", "behavior_of"]


class ScalableSystem(Protocol):
    """What the autoscaler reads and calls on the supervisor."""

    state: SystemState  # phase, `autoscale`, `autoscale_latest`
    stopping: asyncio.Event  # set: the autoscaler ends
    scale_lock: asyncio.Lock  # held while instance counts change

    def publish(self) -> None:
        """Write the state file."""

    def client_tls(self) -> ssl.SSLContext:
        """The operator's client certificate, to read the gateways' /metrics."""

    def groups(self) -> list[tuple[str, int | None]]:
        """Every (service, shard) that scales as one."""

    def group_instances(self, service: str, shard: int | None) -> tuple[int, list[str]]:
        """How many instances a group has, and the names of those that are ready."""

    async def scrape_gateways(self, client: httpx.AsyncClient) -> list[str | None]:
        """Each gateway's /metrics text (None where one did not answer)."""

    async def scale(
        self,
        service: str,
        shard: int | None,
        count: int,
        *,
        source: Literal["manual", "autoscale"],
        metric: float | None = None,
        reason: str = "",
    ) -> str:
        """Bring a group to `count` instances (the caller holds `scale_lock`)."""


def behavior_of(settings: AutoscaleSettings) -> Behavior:
    """The HPA's default behavior, with the scale-down window of `--scale-down-window`."""
    return Behavior(
        scale_up=DEFAULT_BEHAVIOR.scale_up,
        scale_down=Rules(settings.scale_down_window_s, DEFAULT_BEHAVIOR.scale_down.policies),
    )


async def autoscale(system: ScalableSystem, settings: AutoscaleSettings) -> None:
    """Every `settings.interval_s` one round, until the system stops."""
    behavior = behavior_of(settings)
    meter = gateway_metrics.LoadMeter()
    histories: dict[str, History] = {}
    system.state.autoscale = settings
    async with httpx.AsyncClient(verify=system.client_tls()) as client:
        while not system.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(system.stopping.wait(), settings.interval_s)
            if system.state.phase != "running" or system.scale_lock.locked():
                continue  # a change under way: the next round sees its outcome
            try:
                await autoscale_round(system, client, settings, behavior, meter, histories)
            except Exception as exc:  # one bad round must not end autoscaling
                print(f"autoscale: {type(exc).__name__}: {exc}", flush=True)


async def autoscale_round(
    system: ScalableSystem,
    client: httpx.AsyncClient,
    settings: AutoscaleSettings,
    behavior: Behavior,
    meter: gateway_metrics.LoadMeter,
    histories: dict[str, History],
) -> None:
    """Read the gateways, decide for every group, carry out the changes, publish."""
    texts = await system.scrape_gateways(client)
    read = [gateway_metrics.parse_gateway_load(t) for t in texts if t is not None]
    now = time.monotonic()
    averages = meter.observe(now, gateway_metrics.merge_loads(read)) if read else {}
    for service, shard in system.groups():
        group = group_name(service, shard)
        current, ready = system.group_instances(service, shard)
        metric = gateway_metrics.per_instance(averages, ready) if read else None
        decision, history = decide(
            now=now,
            current=current,
            metric=metric,
            target=settings.target_in_flight,
            min_instances=settings.min_instances,
            max_instances=settings.max_instances,
            history=histories.get(group, History()),
            tolerance=settings.tolerance,
            behavior=behavior,
        )
        system.state.autoscale_latest[group] = ScalingEvent(
            at=time.time(),
            group=group,
            from_count=decision.current,
            to_count=decision.desired,
            metric=metric,
            reason=decision.reason,
            source="autoscale",
        )
        if decision.changes:
            try:
                async with system.scale_lock:
                    await system.scale(
                        service,
                        shard,
                        decision.desired,
                        source="autoscale",
                        metric=metric,
                        reason=decision.reason,
                    )
            except ScaleError as exc:
                print(f"autoscale {group}: {exc}", flush=True)
                continue  # not applied: not remembered
        histories[group] = history
    system.publish()
