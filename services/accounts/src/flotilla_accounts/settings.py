"""Settings of the accounts service (environment variables `FLOTILLA_*`)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from flotilla_kit.settings import ServiceSettings

__all__ = ["AccountsSettings"]


class AccountsSettings(ServiceSettings):
    service_name: str = Field(default="accounts", description="Name in logs and metrics.")
    shard: int = Field(
        default=0, ge=0, le=999, description="Ledger shard this instance serves (in account ids)."
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="How many ledger shards there are; a customer's accounts live on "
        "`home_shard(owner_id, shards)`.",
    )
    grpc_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the gRPC ledger API (the 2PC participant); 0 serves none.",
    )
    payments_urls: list[str] = Field(
        default_factory=list,
        description="Base URLs of the payments instances, asked how an in-doubt transfer "
        "ended; empty: in-doubt branches wait for the coordinator to come back on its own.",
    )
    auth_token_urls: list[str] = Field(
        default_factory=list,
        description="Token endpoints of the auth service, for this service's own "
        "client-credentials token (proved with the TLS key), tried in order.",
    )
    branch_in_doubt_after_s: float = Field(
        default=10.0,
        gt=0,
        description="A branch PREPARED for longer than this is in doubt: recovery asks the "
        "coordinator how its transfer ended.",
    )
    recovery_interval_s: float = Field(
        default=2.0, gt=0, description="How often recovery looks for branches in doubt."
    )

    @model_validator(mode="after")
    def _shard_exists(self) -> Self:
        if self.shard >= self.shards:
            raise ValueError(f"shard {self.shard} does not exist among {self.shards} shard(s)")
        return self
