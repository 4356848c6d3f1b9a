"""The shapes of the billing REST API, for its OpenAPI document (`GET /openapi.json`).

The views answer dicts built by `http.document_json` (the JSON is that, not a dump of
these models) and read the query with a DRF serializer (`http.ListQuery`); these models
say the same, and the service's tests check that they agree with what is answered."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from flotilla_kit.text import ApiModel

__all__ = ["DocumentLineOut", "DocumentOut", "DocumentPage", "DocumentQuery"]


class DocumentQuery(ApiModel):
    limit: int = Field(default=20, ge=1, le=100, description="Documents on the page.")
    after: str | None = Field(
        default=None,
        max_length=16,
        description="`next_after` of the previous page: the documents numbered before it.",
    )
    customer_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Whose documents (staff only, `invoices:read:any`); the caller's own "
        "by default.",
    )


class DocumentLineOut(BaseModel):
    product_id: str
    quantity: int
    unit_price_minor: int = Field(description="Minor units; negative on a credit note.")
    vat_rate_bp: int = Field(description="VAT rate in basis points.")
    net_minor: int
    vat_minor: int
    amount_minor: int = Field(description="Net plus VAT.")


class DocumentOut(BaseModel):
    """An invoice or a credit note."""

    id: str = Field(description="A UUID.")
    kind: Literal["invoice", "credit_note"]
    number: str = Field(description="`2026-000123`: the year, then its place in the year.")
    order_id: str
    customer_id: str
    currency: str
    lines: list[DocumentLineOut]
    net_minor: int
    vat_minor: int
    total_minor: int
    transfer_id: str = Field(description="The payment (invoice) or the refund (credit note).")
    credits_id: str | None = Field(description="The invoice a credit note credits.")
    credits_number: str | None
    issued_at: str = Field(description="RFC 3339, UTC.")


class DocumentPage(BaseModel):
    items: list[DocumentOut] = Field(description="Newest first (by number).")
    next_after: str | None = Field(description="`after` for the next page; null on the last.")
