"""Changing the number of instances of a running system: what may be scaled, and how
`flotilla scale` asks the supervisor.

A request is a JSON file `var/run/scale/<id>.json`; the supervisor looks for requests on
every round of its watch loop (each second), carries them out one at a time, and answers
in `var/run/scale/<id>.result.json`. The requester removes the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, Field

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.planning import BACKEND_SERVICES, SHARDED_SERVICE
from flotilla_cli.launcher.state import InstanceState, write_atomically

__all__ = [
    "MAX_INSTANCES",
    "ScaleError",
    "ScaleRequest",
    "ScaleResult",
    "answer",
    "group_counts",
    "group_name",
    "pending_requests",
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
