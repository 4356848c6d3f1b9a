"""Request and response bodies of the inventory REST API (pydantic v2).

Integers are strict: `"5"` or `5.0` for a quantity is a 422, not a silent conversion.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from flotilla_inventory.domain import (
    CURRENCIES,
    MAX_LINES,
    MAX_ON_HAND,
    MAX_PRICE_MINOR,
    MAX_QUANTITY,
    MAX_REASON_LENGTH,
    NAME_LENGTH,
    PRODUCT_ID_LENGTH,
    Product,
    Reservation,
)
from flotilla_kit import text

__all__ = [
    "ProductIn",
    "ProductList",
    "ProductOut",
    "ProductPatch",
    "ReservationIn",
    "ReservationLineIn",
    "ReservationOut",
    "ReservedLineOut",
    "StockAdjustmentIn",
]

Sku = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Stock keeping unit: unique, letters, digits and . _ -",
        examples=["MUG-BLUE-01"],
    ),
]
# Shown to customers: one line, NFC (the kit's text rule).
Name = Annotated[text.Name, Field(min_length=1, max_length=NAME_LENGTH, examples=["Blue mug"])]
Price = Annotated[
    StrictInt,
    Field(
        gt=0, le=MAX_PRICE_MINOR, description="Unit price in minor units (cents).", examples=[1250]
    ),
]
Currency = Annotated[
    str,
    Field(
        description="ISO 4217 code of a currency the shop sells in.",
        examples=["EUR"],
        json_schema_extra={"enum": sorted(CURRENCIES)},
    ),
]


class ProductIn(text.ApiModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    name: Name
    price_minor: Price
    currency: Currency
    on_hand: StrictInt = Field(
        default=0, ge=0, le=MAX_ON_HAND, description="Units in stock to start with."
    )


class ProductPatch(text.ApiModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    price_minor: Price | None = Field(
        default=None,
        description="The new unit price: new reservations get it, held ones keep theirs.",
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if self.name is None and self.price_minor is None:
            raise ValueError("give a new name, a new price_minor, or both")
        return self


class StockAdjustmentIn(text.ApiModel):
    model_config = ConfigDict(extra="forbid")

    delta: StrictInt = Field(
        ge=-MAX_ON_HAND,
        le=MAX_ON_HAND,
        description="Units in (positive) or out (negative); never zero. Stock on hand may "
        "not drop below what is held for reservations.",
        examples=[25],
    )
    reason: text.SingleLine = Field(
        min_length=1, max_length=MAX_REASON_LENGTH, examples=["delivery 2026-12-01"]
    )

    @model_validator(mode="after")
    def _not_zero(self) -> Self:
        if self.delta == 0:
            raise ValueError("delta must not be zero")
        return self


class ProductOut(BaseModel):
    id: str
    sku: str
    name: str
    price_minor: int = Field(description="Unit price in minor units (cents).")
    currency: str
    available: int = Field(description="What a new reservation may take: on hand minus held.")
    on_hand: int = Field(description="Units the shop has, held ones included.")

    @classmethod
    def of(cls, product: Product) -> ProductOut:
        return cls(
            id=product.id,
            sku=product.sku,
            name=product.name,
            price_minor=product.price_minor,
            currency=product.currency,
            available=product.available,
            on_hand=product.on_hand,
        )


class ProductList(BaseModel):
    items: list[ProductOut]
    next_after: str | None = Field(
        description="Pass as `after` for the next page; null on the last page."
    )


class ReservationLineIn(text.ApiModel):
    model_config = ConfigDict(extra="forbid")

    product_id: text.SingleLine = Field(min_length=1, max_length=PRODUCT_ID_LENGTH)
    quantity: StrictInt = Field(ge=1, le=MAX_QUANTITY)


class ReservationIn(text.ApiModel):
    model_config = ConfigDict(extra="forbid")

    reservation_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="The caller's id (an order id); every call is idempotent per id.",
    )
    lines: list[ReservationLineIn] = Field(
        min_length=1, max_length=MAX_LINES, description="Each product at most once."
    )
    hold_s: StrictInt = Field(
        default=0, ge=0, description="Seconds to hold the stock; 0: the service's default."
    )


class ReservedLineOut(BaseModel):
    product_id: str
    quantity: int
    unit_price_minor: int = Field(description="The price when the stock was held.")
    currency: str


class ReservationOut(BaseModel):
    reservation_id: str
    state: str = Field(description="held, committed, released, expired or refused.")
    refusal: str | None = Field(
        description="When refused: out_of_stock, unknown_product or already_released."
    )
    detail: str
    lines: list[ReservedLineOut] = Field(description="Empty unless stock was held at some point.")
    expires_at: dt.datetime | None = Field(
        description="The hold's deadline (for held: when the sweeper gives the stock back)."
    )
    short_products: list[str] = Field(description="For out_of_stock, unknown_product: which.")

    @classmethod
    def of(cls, reservation: Reservation) -> ReservationOut:
        return cls(
            reservation_id=reservation.id,
            state=reservation.state.value,
            refusal=reservation.refusal.value if reservation.refusal else None,
            detail=reservation.detail,
            lines=[
                ReservedLineOut(
                    product_id=line.product_id,
                    quantity=line.quantity,
                    unit_price_minor=line.unit_price_minor,
                    currency=line.currency,
                )
                for line in reservation.lines
            ],
            expires_at=reservation.expires_at,
            short_products=list(reservation.short_products),
        )
