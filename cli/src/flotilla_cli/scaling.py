"""Changing the number of instances of a running system: what may be scaled, how
`flotilla scale` asks the supervisor, and the load the autoscaler reads from the gateways.

A request is a JSON file `var/run/scale/<id>.json`; the supervisor looks for requests on
every round of its watch loop (each second), carries them out one at a time, and answers
in `var/run/scale/<id>.result.json`. The requester removes the answer.

The load is read from each gateway's `/metrics`: per upstream instance, the sum of the
time its attempts took (`flotilla_gateway_upstream_duration_seconds_sum`). Its growth
over an interval, divided by the interval, is the average number of requests the gateway
had in flight to that instance (Little's law) — steadier than a sample of the in-flight
gauge, which misses what starts and ends between two scrapes. An instance seen for the
first time (or whose sum went back, after a gateway restart) counts with that gauge.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from flotilla_cli.layout import VarLayout
from flotilla_cli.planning import BACKEND_SERVICES, SHARDED_SERVICE
from flotilla_cli.state import InstanceState, write_atomically

__all__ = [
    "MAX_INSTANCES",
    "InstanceLoad",
    "LoadMeter",
    "ScaleError",
    "ScaleRequest",
    "ScaleResult",
    "answer",
    "group_counts",
    "group_name",
    "merge_loads",
    "parse_gateway_health",
    "parse_gateway_load",
    "pending_requests",
    "per_instance",
    "read_result",
    "request_path",
    "requests_dir",
    "result_path",
    "submit",
    "validate_request",
]

MAX_INSTANCES = 16  # per service (per shard for the ledger), as `flotilla up --instances`


class ScaleError(Exception):
    """A request that cannot be carried out; the message says why."""


class ScaleRequest(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    service: str
    shard: int | None = Field(default=None, description="For the ledger: one shard; None: all.")
    instances: int


class ScaleResult(BaseModel):
    id: str
    ok: bool
    detail: str
    counts: dict[str, int] = Field(default_factory=dict)


def requests_dir(layout: VarLayout) -> Path:
    return layout.run / "scale"


def request_path(layout: VarLayout, request_id: str) -> Path:
    return requests_dir(layout) / f"{request_id}.json"


def result_path(layout: VarLayout, request_id: str) -> Path:
    return requests_dir(layout) / f"{request_id}.result.json"


def submit(layout: VarLayout, request: ScaleRequest) -> None:
    write_atomically(request_path(layout, request.id), request.model_dump_json())


def answer(layout: VarLayout, result: ScaleResult) -> None:
    write_atomically(result_path(layout, result.id), result.model_dump_json())
    request_path(layout, result.id).unlink(missing_ok=True)


def read_result(layout: VarLayout, request_id: str) -> ScaleResult | None:
    try:
        return ScaleResult.model_validate_json(result_path(layout, request_id).read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def pending_requests(layout: VarLayout) -> list[ScaleRequest]:
    """Requests not answered yet, oldest first; an unreadable one is answered at once."""
    found: list[tuple[float, ScaleRequest]] = []
    directory = requests_dir(layout)
    if not directory.is_dir():
        return []
    for path in directory.glob("*.json"):
        if path.name.endswith(".result.json") or path.name.startswith("."):
            continue
        try:
            request = ScaleRequest.model_validate_json(path.read_bytes())
            found.append((path.stat().st_mtime, request))
        except FileNotFoundError:
            continue
        except ValueError as exc:
            answer(layout, ScaleResult(id=path.stem, ok=False, detail=f"bad request: {exc}"))
    return [request for _, request in sorted(found, key=lambda pair: pair[0])]


def group_name(service: str, shard: int | None) -> str:
    """What scales as one: a service, or one shard of the ledger (`accounts-s0`)."""
    return service if shard is None else f"{service}-s{shard}"


def group_counts(instances: Iterable[InstanceState]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for instance in instances:
        if instance.command == "serve" and instance.service != "gateway":
            key = group_name(instance.service, instance.shard)
            counts[key] = counts.get(key, 0) + 1
    return counts


def validate_request(request: ScaleRequest, *, shards: int) -> list[tuple[str, int | None]]:
    """The (service, shard) groups a request scales; ScaleError says what is wrong."""
    service = request.service
    if service == "relay" or service.endswith("-relay"):
        raise ScaleError(
            "relays are not scalable: each service with an outbox has exactly one relay, "
            "which publishes its events in order"
        )
    if service == "gateway":
        raise ScaleError(
            "the gateway is not scalable while running: start with `flotilla up --gateways N`"
        )
    if service not in BACKEND_SERVICES:
        raise ScaleError(f"unknown service {service!r}; scalable: {', '.join(BACKEND_SERVICES)}")
    if not 1 <= request.instances <= MAX_INSTANCES:
        raise ScaleError(f"instances must be between 1 and {MAX_INSTANCES}")
    if service != SHARDED_SERVICE:
        if request.shard is not None:
            raise ScaleError(f"{service} has no shards (only {SHARDED_SERVICE} has)")
        return [(service, None)]
    if request.shard is None:
        return [(service, shard) for shard in range(shards)]
    if not 0 <= request.shard < shards:
        raise ScaleError(f"shard must be between 0 and {shards - 1}")
    return [(service, request.shard)]


# -- load ------------------------------------------------------------------------------------
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
