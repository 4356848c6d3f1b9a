"""Settings of the inventory service (environment variables `FLOTILLA_*`)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from flotilla_kit.settings import ServiceSettings

__all__ = ["InventorySettings"]


class InventorySettings(ServiceSettings):
    service_name: str = Field(default="inventory", description="Name in logs and metrics.")
    grpc_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the gRPC reservation API (mutual TLS); 0 serves none.",
    )
    reservation_hold_s: int = Field(
        default=120,
        ge=1,
        description="How long a reservation holds its stock when the caller asks for no "
        "particular hold (hold_s 0).",
    )
    max_hold_s: int = Field(
        default=3600,
        ge=1,
        description="The longest hold a caller may ask for; a longer one is refused as INVALID.",
    )
    sweep_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often each instance's sweeper expires held reservations past their "
        "deadline (giving their stock back).",
    )
    sweep_batch: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Most reservations one sweep expires; the rest wait for the next sweep.",
    )
    stream_window: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Requests of one ReserveStream being worked on at once; the stream reads "
        "no further until one of them is answered (flow control for a fast sender).",
    )
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="NATS JetStream server the relay publishes stock events to.",
    )

    @model_validator(mode="after")
    def _default_hold_within_max(self) -> Self:
        if self.reservation_hold_s > self.max_hold_s:
            raise ValueError(
                f"reservation_hold_s ({self.reservation_hold_s}) is longer than max_hold_s "
                f"({self.max_hold_s})"
            )
        return self
