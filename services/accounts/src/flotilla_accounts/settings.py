"""Settings of the accounts service (environment variables `FLOTILLA_*`)."""

from __future__ import annotations

from pydantic import Field

from flotilla_kit.settings import ServiceSettings

__all__ = ["AccountsSettings"]


class AccountsSettings(ServiceSettings):
    service_name: str = Field(default="accounts", description="Name in logs and metrics.")
    shard: int = Field(
        default=0, ge=0, le=999, description="Ledger shard this instance serves (in account ids)."
    )
