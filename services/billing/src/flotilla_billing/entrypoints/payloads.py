"""The orders events billing acts on, as pydantic models of their `data` (the orders
service's events contract, services/orders/README.md): whatever does not validate is
refused with the first error as the reason, and dead-lettered."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flotilla_billing.domain import ConfirmedOrder, OrderLine, RefundedOrder
from flotilla_kit.money import CURRENCIES, MAX_AMOUNT_MINOR

__all__ = ["LinePayload", "OrderConfirmedPayload", "OrderRefundedPayload", "refusal_of"]

_ID = Field(min_length=1, max_length=64)


class LinePayload(BaseModel):
    # Strict: "3" is not 3, and a float price is a broken producer, not a rounding question.
    model_config = ConfigDict(strict=True, frozen=True)

    product_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=10_000)
    unit_price_minor: int = Field(ge=0, le=MAX_AMOUNT_MINOR)

    def domain(self) -> OrderLine:
        return OrderLine(self.product_id, self.quantity, self.unit_price_minor)


class _OrderPayload(BaseModel):
    # Fields the producer adds later are ignored (a consumer reads what it needs).
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    order_id: str = _ID
    customer_id: str = Field(min_length=1, max_length=128)
    lines: list[LinePayload] = Field(min_length=1, max_length=100)
    total_minor: int = Field(gt=0, le=MAX_AMOUNT_MINOR)
    currency: str

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.currency not in CURRENCIES:
            raise ValueError(f"currency {self.currency[:8]!r} is not one Flotilla handles")
        products = [line.product_id for line in self.lines]
        if len(set(products)) != len(products):
            raise ValueError("a product appears twice")
        gross = sum(line.quantity * line.unit_price_minor for line in self.lines)
        if gross != self.total_minor:
            raise ValueError(f"the lines add up to {gross}, not to total_minor {self.total_minor}")
        return self


class OrderConfirmedPayload(_OrderPayload):
    payment_transfer_id: str | None = Field(default=None, min_length=1, max_length=64)

    def domain(self) -> ConfirmedOrder:
        return ConfirmedOrder(
            order_id=self.order_id, customer_id=self.customer_id, currency=self.currency,
            total_minor=self.total_minor, lines=tuple(line.domain() for line in self.lines),
            payment_transfer_id=self.payment_transfer_id,
        )  # fmt: skip


class OrderRefundedPayload(_OrderPayload):
    refund_transfer_id: str = _ID

    def domain(self) -> RefundedOrder:
        return RefundedOrder(
            order_id=self.order_id, customer_id=self.customer_id, currency=self.currency,
            total_minor=self.total_minor, lines=tuple(line.domain() for line in self.lines),
            refund_transfer_id=self.refund_transfer_id,
        )  # fmt: skip


def refusal_of(error: ValidationError) -> str:
    """The first problem of a payload, in a few words: `lines.0.quantity: Input should be
    greater than or equal to 1` (no location for a rule of the whole payload)."""
    first: dict[str, Any] = dict(error.errors(include_url=False, include_input=False)[0])
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = str(first.get("msg", "invalid"))
    return f"{where}: {message}" if where else message
