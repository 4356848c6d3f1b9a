"""What the supervisor tells the rest of the CLI: the plan it was given and the live state.

Both are JSON files under `var/run/`, written atomically, so `flotilla status`, `down` and
the live view of `up` can read them from any process at any time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "AutoscaleSettings",
    "InstancePlan",
    "InstanceState",
    "Phase",
    "Plan",
    "ScalingEvent",
    "SystemState",
    "write_atomically",
]

Phase = Literal["preparing", "seeding", "starting", "running", "stopping", "stopped", "failed"]


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


class InstancePlan(BaseModel):
    service: str
    name: str
    port: int
    url: str  # empty for a process that serves no HTTP (a relay)
    shard: int | None = None
    grpc_port: int | None = None
    # `python -m flotilla_<service> <command>`: `serve`, or `relay` (publishes the
    # service's outbox; no HTTP, ready while it runs).
    command: Literal["serve", "relay"] = "serve"
    env: dict[str, str]

    @property
    def serves_http(self) -> bool:
        return self.command == "serve"


class AutoscaleSettings(BaseModel):
    """`flotilla up --autoscale`: the HPA's rule on requests in flight per instance."""

    min_instances: int = Field(default=1, ge=1, description="Fewest instances per service.")
    max_instances: int = Field(default=4, ge=1, description="Most instances per service.")
    target_in_flight: float = Field(
        default=2.0, gt=0, description="Requests in flight per instance the autoscaler aims at."
    )
    interval_s: float = Field(default=5.0, gt=0, description="Time between two decisions.")
    tolerance: float = Field(
        default=0.1, ge=0, description="No change while metric / target is within 1 +- this."
    )
    scale_down_window_s: float = Field(
        default=30.0,
        ge=0,
        description="Scale-down stabilization window: the highest recommendation of this "
        "long counts (the HPA's default is 300 s).",
    )


class ScalingEvent(BaseModel):
    """One decision: a change made by `flotilla scale` or the autoscaler, or the
    autoscaler's latest verdict on a service (then `from_count == to_count`)."""

    at: float  # wall-clock time
    group: str  # the service, or `accounts-s0` for one ledger shard
    from_count: int
    to_count: int
    metric: float | None = None  # requests in flight per instance
    reason: str = ""
    source: Literal["manual", "autoscale"] = "manual"


class Plan(BaseModel):
    """Everything the supervisor needs, decided by `flotilla up` before it starts."""

    var_dir: Path
    profile: str
    database: Literal["sqlite", "postgres"]
    postgres_url: str | None = Field(
        default=None, description="External PostgreSQL server; None starts an embedded one."
    )
    gateway_url: str
    shards: int = 1
    valkey_port: int | None = Field(
        default=None, description="Embedded Valkey for the gateways' shared rate limits."
    )
    nats_url: str | None = Field(
        default=None, description="The NATS server (JetStream) the services' events go through."
    )
    instances: list[InstancePlan]
    demo_data: bool = True
    autoscale: AutoscaleSettings | None = None


class InstanceState(BaseModel):
    service: str
    name: str
    port: int
    url: str  # empty for a relay
    shard: int | None = None
    command: Literal["serve", "relay"] = "serve"
    pid: int | None = None
    ready: bool = False
    restarts: int = 0
    rss_bytes: int | None = None
    uss_bytes: int | None = Field(
        default=None, description="Memory only this process uses (RSS minus shared pages)."
    )
    last_exit_code: int | None = None

    @classmethod
    def of(cls, plan: InstancePlan) -> InstanceState:
        """A planned instance, not started yet."""
        return cls(
            service=plan.service, name=plan.name, port=plan.port, url=plan.url,
            shard=plan.shard, command=plan.command,
        )  # fmt: skip


class SystemState(BaseModel):
    phase: Phase
    supervisor_pid: int
    detail: str = ""
    gateway_url: str
    database: str
    shards: int = 1  # ledger shards
    postgres_pid: int | None = None
    valkey_pid: int | None = None
    nats_pid: int | None = None
    nats_url: str | None = None
    started_at: float
    ready_at: float | None = None
    instances: list[InstanceState] = Field(default_factory=list)
    autoscale: AutoscaleSettings | None = None
    scaling: list[ScalingEvent] = Field(
        default_factory=list, description="The latest changes of instance counts, oldest first."
    )
    autoscale_latest: dict[str, ScalingEvent] = Field(
        default_factory=dict, description="The autoscaler's latest decision per service."
    )

    @property
    def all_ready(self) -> bool:
        return bool(self.instances) and all(i.ready for i in self.instances)

    @classmethod
    def read(cls, path: Path) -> SystemState | None:
        try:
            return cls.model_validate_json(path.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
