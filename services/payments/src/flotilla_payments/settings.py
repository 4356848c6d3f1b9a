"""Settings of the payments service (environment variables `FLOTILLA_*`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from flotilla_kit.settings import FaultSettings, LeaseSettings
from flotilla_payments.service_layer.faults import FaultPoint

__all__ = ["PaymentsSettings"]


class PaymentsSettings(FaultSettings, LeaseSettings):
    fault_service = "payments"
    fault_points = FaultPoint

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
