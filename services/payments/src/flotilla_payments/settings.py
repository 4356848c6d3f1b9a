"""Settings of the payments service (environment variables `FLOTILLA_*`)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from flotilla_kit.faults import faults_of_service
from flotilla_kit.settings import LeaseSettings, ServiceSettings
from flotilla_payments.service_layer.faults import FaultPoint

__all__ = ["PaymentsSettings"]


class PaymentsSettings(ServiceSettings, LeaseSettings):
    service_name: str = Field(default="payments", description="Name in logs and metrics.")
    ledger_shards: dict[int, list[str]] = Field(
        default_factory=dict,
        description=(
            'Ledger shard -> gRPC targets ("host:port") of its accounts instances, as JSON: '
            '{"0": ["127.0.0.1:7101", "127.0.0.1:7102"], "1": [...]}.'
        ),
    )
    auth_token_urls: list[str] = Field(
        default_factory=list,
        description=(
            "Token endpoints of the auth service, tried in order, for this service's own "
            "token (client `payments`, proven with the instance's TLS certificate and key)."
        ),
    )
    rpc_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Deadline of each gRPC call to a ledger shard."
    )
    answer_within_s: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="How long POST /transfers waits for an outcome before answering 202.",
    )
    prepare_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="A cross-shard transfer still PREPARING after this long is aborted.",
    )
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="NATS server the relay publishes this service's events to (JetStream).",
    )
    faults: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Fault injection (profiles test and dev only): point -> probability that the "
            "process exits there at once (status 137); a point may be qualified as "
            "'payments:<point>', and other services' points are ignored. Points: "
            + ", ".join(p.value for p in FaultPoint)
            + "."
        ),
    )

    @field_validator("ledger_shards")
    @classmethod
    def _shards_have_targets(cls, shards: dict[int, list[str]]) -> dict[int, list[str]]:
        for shard, targets in shards.items():
            if not 0 <= shard <= 999:
                raise ValueError(f"shard {shard} is out of range (0-999)")
            if not targets:
                raise ValueError(f"shard {shard} has no targets")
            for target in targets:
                host, _, port = target.rpartition(":")
                if not host or not port.isdigit():
                    raise ValueError(f"target {target!r} of shard {shard} is not host:port")
        return shards

    @field_validator("faults")
    @classmethod
    def _own_fault_points(cls, faults: dict[str, float]) -> dict[str, float]:
        return faults_of_service(faults, service="payments", points=FaultPoint)

    @model_validator(mode="after")
    def _faults_only_in_test_or_dev(self) -> Self:
        if self.faults and self.profile not in ("test", "dev"):
            raise ValueError(
                f"fault injection is refused in profile {self.profile!r} (only test and dev)"
            )
        return self
