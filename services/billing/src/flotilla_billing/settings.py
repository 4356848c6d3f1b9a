"""Settings of the billing service (environment variables `FLOTILLA_*`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from flotilla_billing.domain import MAX_RATE_BP
from flotilla_kit.settings import ServiceSettings

__all__ = ["BillingSettings"]


class BillingSettings(ServiceSettings):
    service_name: str = Field(default="billing", description="Name in logs and metrics.")
    nats_url: str = Field(
        default="nats://127.0.0.1:4222", description="The NATS server (JetStream) for events."
    )
    consumers: bool = Field(
        default=True,
        description="Run the order events' consumer in this instance (it waits for NATS "
        "when it is not there; the HTTP API serves meanwhile).",
    )
    vat_default_bp: int = Field(
        default=2000,
        ge=0,
        le=MAX_RATE_BP,
        description="VAT rate of every product not overridden, in basis points (2000 = 20 %).",
    )
    vat_overrides_bp: dict[str, int] = Field(
        default_factory=dict,
        description='Per-product VAT rates in basis points, as JSON: {"book-1": 550}.',
    )
    seller_name: str = Field(
        default="Flotilla shop",
        min_length=1,
        max_length=120,
        description="Who issues the documents (printed on the PDFs).",
    )

    @field_validator("vat_overrides_bp")
    @classmethod
    def _rates_in_range(cls, overrides: dict[str, int]) -> dict[str, int]:
        for product, rate in overrides.items():
            if not 0 <= rate <= MAX_RATE_BP:
                raise ValueError(f"VAT rate of {product!r} ({rate}) is outside 0..{MAX_RATE_BP}")
            if not 1 <= len(product) <= 64:
                raise ValueError(f"product id {product[:70]!r} is not 1 to 64 characters")
        return overrides
