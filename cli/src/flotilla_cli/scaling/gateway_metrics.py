"""The load the autoscaler reads from the gateways, and which instances they take traffic to.

The load is read from each gateway's `/metrics`: per upstream instance, the sum of the
time its attempts took (`flotilla_gateway_upstream_duration_seconds_sum`). Its growth
over an interval, divided by the interval, is the average number of requests the gateway
had in flight to that instance (Little's law) — steadier than a sample of the in-flight
gauge, which misses what starts and ends between two scrapes. An instance seen for the
first time (or whose sum went back, after a gateway restart) counts with that gauge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "InstanceLoad",
    "LoadMeter",
    "merge_loads",
    "parse_gateway_health",
    "parse_gateway_load",
    "per_instance",
]


@dataclass(frozen=True, slots=True)
class InstanceLoad:
    in_flight: float  # the gauge, now
    duration_sum: float  # seconds of attempts, since the gateway started


def parse_gateway_load(text: str) -> dict[str, InstanceLoad]:
    """Per upstream instance name, from one gateway's Prometheus text."""
    in_flight: dict[str, float] = {}
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.labels.get("instance")
            if name is None:
                continue
            if sample.name == "flotilla_gateway_upstream_in_flight":
                in_flight[name] = sample.value
            elif sample.name == "flotilla_gateway_upstream_duration_seconds_sum":
                sums[name] = sample.value
    return {
        name: InstanceLoad(in_flight.get(name, 0.0), sums.get(name, 0.0))
        for name in in_flight.keys() | sums.keys()
    }


def parse_gateway_health(text: str) -> dict[str, bool]:
    """Per upstream instance name a gateway lists: whether it gets traffic."""
    return {
        sample.labels["instance"]: sample.value == 1.0
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "flotilla_gateway_upstream_healthy" and "instance" in sample.labels
    }


def merge_loads(loads: Iterable[Mapping[str, InstanceLoad]]) -> dict[str, InstanceLoad]:
    """Several gateways: what each has in flight to an instance adds up."""
    merged: dict[str, InstanceLoad] = {}
    for load in loads:
        for name, value in load.items():
            seen = merged.get(name, InstanceLoad(0.0, 0.0))
            merged[name] = InstanceLoad(
                seen.in_flight + value.in_flight, seen.duration_sum + value.duration_sum
            )
    return merged


@dataclass
class LoadMeter:
    """Average requests in flight per instance between two observations."""

    _last_at: float | None = None
    _last: dict[str, InstanceLoad] = field(default_factory=dict)

    def observe(self, now: float, loads: Mapping[str, InstanceLoad]) -> dict[str, float]:
        averages: dict[str, float] = {}
        elapsed = None if self._last_at is None else now - self._last_at
        for name, load in loads.items():
            before = self._last.get(name)
            if elapsed and elapsed > 0 and before and load.duration_sum >= before.duration_sum:
                averages[name] = (load.duration_sum - before.duration_sum) / elapsed
            else:
                averages[name] = load.in_flight
        self._last_at, self._last = now, dict(loads)
        return averages


def per_instance(averages: Mapping[str, float], names: Iterable[str]) -> float | None:
    """The mean over a group's instances the gateways report; None when none is reported."""
    values = [averages[name] for name in names if name in averages]
    return sum(values) / len(values) if values else None
