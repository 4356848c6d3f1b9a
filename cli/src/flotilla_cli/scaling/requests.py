"""Changing the number of instances of a running system: what may be scaled (the plan's
services, within limits), and the request files `flotilla scale` and the supervisor
exchange under `var/run/scale`.

The file protocol itself (`ScaleRequest`, `ScaleResult`, submit, answer, take, withdraw,
pending) is the kit's, `flotilla_kit.scale_requests`, which the web console uses too, on
the folder `requests_dir(layout)` names.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.planning import BACKEND_SERVICES, SHARDED_SERVICE
from flotilla_cli.launcher.state import InstanceState
from flotilla_kit import scale_requests
from flotilla_kit.scale_requests import ScaleRequest, ScaleResult

__all__ = [
    "MAX_INSTANCES",
    "ScaleError",
    "ScaleRequest",
    "ScaleResult",
    "group_counts",
    "group_name",
    "requests_dir",
    "validate_request",
]

MAX_INSTANCES = 16  # per service (per shard for the ledger), as `flotilla up --instances`


class ScaleError(Exception):
    """A request that cannot be carried out; the message says why."""


def requests_dir(layout: VarLayout) -> Path:
    return scale_requests.requests_dir(layout.run)


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
