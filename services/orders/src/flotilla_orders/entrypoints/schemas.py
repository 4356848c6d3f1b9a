"""Request and response bodies of the orders REST API (pydantic v2)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from flotilla_kit.text import ApiModel, SingleLine
from flotilla_orders.domain import MAX_LINES, MAX_QUANTITY, HistoryEntry, Order, OrderState

__all__ = [
    "HistoryEntryOut",
    "HistoryList",
    "LineIn",
    "LineOut",
    "OrderIn",
    "OrderList",
    "OrderOut",
]

ProductId = Annotated[
    SingleLine,
    Field(min_length=1, max_length=64, description="A product id, as inventory gives it."),
]


class LineIn(ApiModel):
    model_config = ConfigDict(extra="forbid")

    product_id: ProductId
    quantity: StrictInt = Field(ge=1, le=MAX_QUANTITY, examples=[2])


class OrderIn(ApiModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[LineIn] = Field(
        min_length=1, max_length=MAX_LINES, description="Each product at most once."
    )
    payment_account: SingleLine = Field(
        min_length=1,
        max_length=128,
        description="One of the caller's own bank accounts (`acc_<shard>_<hex>`), in the "
        "currency the products are priced in.",
        examples=["acc_0_9f1c3e5a7b2d4f6e8a0c1b3d5f7e9a2c"],
    )

    @field_validator("lines")
    @classmethod
    def _each_product_once(cls, lines: list[LineIn]) -> list[LineIn]:
        seen: set[str] = set()
        for line in lines:
            if line.product_id in seen:
                raise ValueError(f"product {line.product_id!r} is on more than one line")
            seen.add(line.product_id)
        return lines


class LineOut(BaseModel):
    product_id: str
    quantity: int
    unit_price_minor: int | None = Field(
        description="Fixed when the stock is held; null until then."
    )


class OrderOut(BaseModel):
    id: str
    customer_id: str
    state: Literal["PENDING", "CONFIRMED", "CANCELLED", "REFUNDING", "REFUNDED"] = Field(
        description="PENDING while its saga runs, then CONFIRMED or CANCELLED; a CONFIRMED "
        "order support refunds is REFUNDING, then REFUNDED."
    )
    reason: str | None = Field(
        description="Why it was cancelled: out-of-stock, insufficient-funds, payment-refused, "
        "payment-unavailable, inventory-unavailable, reservation-expired; null otherwise."
    )
    lines: list[LineOut]
    total_minor: int | None = Field(description="In minor units; null until the stock is held.")
    currency: str
    payment_account: str
    payment_transfer_id: str | None
    refund_transfer_id: str | None
    refund_refusal: str | None = Field(
        description="Why payments refused the last refund of this (still CONFIRMED) order, "
        "as its problem type (insufficient-funds, ...); null otherwise."
    )
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(
            id=str(order.id),
            customer_id=order.customer_id,
            state=order.state.value,
            # A reason is decided on the way (RELEASING, REFUNDING); shown once CANCELLED.
            reason=(
                order.reason.value if order.reason and order.state is OrderState.CANCELLED else None
            ),
            lines=[
                LineOut(
                    product_id=line.product_id,
                    quantity=line.quantity,
                    unit_price_minor=line.unit_price_minor,
                )
                for line in order.lines
            ],
            total_minor=order.total_minor,
            currency=order.currency,
            payment_account=order.payment_account,
            payment_transfer_id=order.payment_transfer_id,
            refund_transfer_id=order.refund_transfer_id,
            refund_refusal=order.refund_refusal,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class OrderList(BaseModel):
    items: list[OrderOut] = Field(description="Newest first.")
    next_after: str | None = Field(
        description="Pass as `after` to get the next page; null on the last page."
    )


class HistoryEntryOut(BaseModel):
    order_id: str
    customer_id: str
    state: Literal["CONFIRMED", "CANCELLED", "REFUNDED"] = Field(
        description="REFUNDED: confirmed, then refunded (its `order_refunded` arrived)."
    )
    reason: str | None = Field(description="Why it was cancelled; null otherwise.")
    total_minor: int | None = Field(description="What was paid (confirmed orders).")
    currency: str | None
    lines: list[LineOut] | None = Field(description="As confirmed; null for cancelled orders.")
    payment_state: Literal["paid", "refunded", "unpaid"] = Field(
        description="paid once the payment's transfer_committed event has arrived, refunded "
        "once the refund's has, unpaid otherwise."
    )
    payment_transfer_id: str | None
    refund_transfer_id: str | None = Field(
        description="The refund's transfer: of a cancelled order's compensation, or of a "
        "refunded order."
    )
    finished_at: dt.datetime = Field(description="When the order was confirmed or cancelled.")

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryEntryOut:
        outcome = entry.outcome
        return cls(
            order_id=outcome.order_id,
            customer_id=outcome.customer_id,
            state=outcome.state.value,
            reason=outcome.reason,
            total_minor=outcome.total_minor,
            currency=outcome.currency,
            lines=(
                [
                    LineOut(
                        product_id=line.product_id,
                        quantity=line.quantity,
                        unit_price_minor=line.unit_price_minor,
                    )
                    for line in outcome.lines
                ]
                if outcome.lines is not None
                else None
            ),
            payment_state=entry.payment_state.value,
            payment_transfer_id=outcome.payment_transfer_id,
            refund_transfer_id=outcome.refund_transfer_id,
            finished_at=outcome.finished_at,
        )


class HistoryList(BaseModel):
    items: list[HistoryEntryOut] = Field(description="Newest first.")
    next_after: str | None = Field(
        description="Pass as `after` to get the next page; null on the last page."
    )
