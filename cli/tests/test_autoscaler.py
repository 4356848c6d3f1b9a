"""The autoscaler's round (`flotilla_cli.scaling.autoscale`), outside the supervisor: from
the gateways' metrics to a decision per group, recorded in the state and carried out."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Literal

import httpx

from flotilla_cli.launcher.state import AutoscaleSettings, SystemState
from flotilla_cli.scaling.autoscale import ScalableSystem, autoscale_round, behavior_of
from flotilla_cli.scaling.gateway_metrics import LoadMeter
from flotilla_cli.scaling.hpa import History
from flotilla_cli.scaling.requests import ScaleError


def _metrics(in_flight: dict[str, float]) -> str:
    """A gateway's /metrics with only the in-flight gauge (what a first round reads)."""
    lines = ["# TYPE flotilla_gateway_upstream_in_flight gauge"]
    lines += [
        f'flotilla_gateway_upstream_in_flight{{service="inventory",instance="{name}"}} {value}'
        for name, value in in_flight.items()
    ]
    return "\n".join(lines) + "\n"


@dataclass
class _System:
    """A system of one scalable group (inventory, two ready instances)."""

    texts: list[str | None]
    refuse: bool = False
    state: SystemState = field(
        default_factory=lambda: SystemState(
            phase="running",
            supervisor_pid=1,
            gateway_url="https://127.0.0.1:1",
            database="sqlite",
            started_at=0.0,
        )
    )
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    scale_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    scaled: list[tuple[str, int | None, int, str]] = field(default_factory=list)
    published: int = 0

    def publish(self) -> None:
        self.published += 1

    def client_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context()

    def groups(self) -> list[tuple[str, int | None]]:
        return [("inventory", None)]

    def group_instances(self, service: str, shard: int | None) -> tuple[int, list[str]]:
        return 2, ["inventory-0", "inventory-1"]

    async def scrape_gateways(self, client: httpx.AsyncClient) -> list[str | None]:
        return self.texts

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
        assert self.scale_lock.locked()  # the autoscaler holds it while a change is made
        if self.refuse:
            raise ScaleError("inventory has no instance to copy")
        self.scaled.append((service, shard, count, source))
        return f"{service}: 2 -> {count}"


def _round(system: _System, histories: dict[str, History]) -> None:
    settings = AutoscaleSettings(min_instances=1, max_instances=4, target_in_flight=2.0)
    scalable: ScalableSystem = system

    async def run() -> None:
        async with httpx.AsyncClient() as client:
            await autoscale_round(
                scalable, client, settings, behavior_of(settings), LoadMeter(), histories
            )

    asyncio.run(run())


def test_a_loaded_group_is_scaled_up_and_the_decision_recorded() -> None:
    system = _System([_metrics({"inventory-0": 6.0, "inventory-1": 6.0})])
    histories: dict[str, History] = {}
    _round(system, histories)
    # 6 in flight per instance against a target of 2: ceil(2 * 3) = 6, capped at --max 4.
    assert system.scaled == [("inventory", None, 4, "autoscale")]
    latest = system.state.autoscale_latest["inventory"]
    assert (latest.from_count, latest.to_count, latest.metric) == (2, 4, 6.0)
    assert latest.source == "autoscale"
    assert "inventory" in histories
    assert system.published == 1


def test_without_an_answering_gateway_nothing_changes() -> None:
    system = _System([None])
    _round(system, {})
    assert system.scaled == []
    latest = system.state.autoscale_latest["inventory"]
    assert (latest.from_count, latest.to_count, latest.metric) == (2, 2, None)


def test_a_change_the_supervisor_refuses_is_not_remembered() -> None:
    system = _System([_metrics({"inventory-0": 6.0, "inventory-1": 6.0})], refuse=True)
    histories: dict[str, History] = {}
    _round(system, histories)
    assert system.scaled == []
    assert histories == {}  # the next round decides afresh
    assert system.state.autoscale_latest["inventory"].to_count == 4
