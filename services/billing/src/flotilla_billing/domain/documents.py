"""Invoices and credit notes: what they hold, how they are numbered, how they are built
from an order's events. No I/O.

Every document has a number `YYYY-NNNNNN`: the year it was issued and its place in that
year's one sequence, shared by invoices and credit notes, without gaps (the adapter
hands out the next one in the document's own transaction).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from dataclasses import dataclass

from flotilla_billing.domain.vat import VatRates, split_gross

__all__ = [
    "ConfirmedOrder",
    "Document",
    "DocumentKind",
    "DocumentLine",
    "OrderLine",
    "RefundDoesNotMatch",
    "RefundedOrder",
    "credit_note_for",
    "format_number",
    "invoice_for",
    "parse_number",
]

_NUMBER = re.compile(r"^(\d{4})-(\d{6,})$")


class DocumentKind(enum.StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


def format_number(year: int, seq: int) -> str:
    """`2026-000123`: six digits, more only past 999 999 documents in a year."""
    if not 1 <= year <= 9999 or seq < 1:
        raise ValueError(f"no document number for year {year}, place {seq}")
    return f"{year:04d}-{seq:06d}"


def parse_number(number: str) -> tuple[int, int] | None:
    """(year, place) of a document number; None if it is not one."""
    match = _NUMBER.match(number)
    if match is None or len(number) > 16:
        return None
    year, seq = int(match.group(1)), int(match.group(2))
    return (year, seq) if year >= 1 and seq >= 1 else None


@dataclass(frozen=True, slots=True)
class OrderLine:
    """A line as the order's events give it: the gross unit price the shop charged."""

    product_id: str
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True, slots=True)
class ConfirmedOrder:
    """`order_confirmed`: the order was paid; it gets an invoice."""

    order_id: str
    customer_id: str
    currency: str
    total_minor: int
    lines: tuple[OrderLine, ...]
    payment_transfer_id: str | None = None


@dataclass(frozen=True, slots=True)
class RefundedOrder:
    """`order_refunded`: a confirmed order was refunded in full; it gets a credit note."""

    order_id: str
    customer_id: str
    currency: str
    total_minor: int
    lines: tuple[OrderLine, ...]
    refund_transfer_id: str


@dataclass(frozen=True, slots=True)
class DocumentLine:
    product_id: str
    quantity: int
    unit_price_minor: int  # gross, VAT included; negative on a credit note
    vat_rate_bp: int
    net_minor: int
    vat_minor: int
    amount_minor: int  # gross: quantity x unit price = net + VAT


@dataclass(frozen=True, slots=True)
class Document:
    id: uuid.UUID
    kind: DocumentKind
    number: str
    order_id: str
    customer_id: str
    currency: str
    lines: tuple[DocumentLine, ...]
    issued_at: dt.datetime
    transfer_id: str | None  # the payment (invoice) or the refund (credit note)
    credits_id: uuid.UUID | None = None  # a credit note: the invoice it credits
    credits_number: str | None = None

    @property
    def net_minor(self) -> int:
        return sum(line.net_minor for line in self.lines)

    @property
    def vat_minor(self) -> int:
        return sum(line.vat_minor for line in self.lines)

    @property
    def total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)

    @property
    def year(self) -> int:
        found = parse_number(self.number)
        assert found is not None  # built by format_number
        return found[0]


def _line(product_id: str, quantity: int, unit_price_minor: int, rate_bp: int) -> DocumentLine:
    amount = quantity * unit_price_minor
    net, vat = split_gross(amount, rate_bp)
    return DocumentLine(product_id, quantity, unit_price_minor, rate_bp, net, vat, amount)


def invoice_for(
    order: ConfirmedOrder, *, rates: VatRates, id: uuid.UUID, number: str, issued_at: dt.datetime
) -> Document:
    """The invoice of a paid order: its lines at the prices paid, split by each product's
    VAT rate; its gross total is the order's total (the event's payload promises it)."""
    lines = tuple(
        _line(line.product_id, line.quantity, line.unit_price_minor, rates.rate_of(line.product_id))
        for line in order.lines
    )
    document = Document(
        id=id, kind=DocumentKind.INVOICE, number=number, order_id=order.order_id,
        customer_id=order.customer_id, currency=order.currency, lines=lines,
        issued_at=issued_at, transfer_id=order.payment_transfer_id,
    )  # fmt: skip
    if document.total_minor != order.total_minor:  # pragma: no cover - the payload checks it
        raise ValueError(f"order {order.order_id}: lines do not add up to its total")
    return document


class RefundDoesNotMatch(ValueError):
    """A full refund that is not its invoice's order: another customer, currency, total or
    lines. Waiting cannot change it."""


def credit_note_for(
    invoice: Document,
    refund: RefundedOrder,
    *,
    id: uuid.UUID,
    number: str,
    issued_at: dt.datetime,
) -> Document:
    """The credit note of a fully refunded order: the invoice's lines with their amounts
    negated, at the invoice's own VAT rates (what was charged is what is credited,
    whatever the rates are today)."""
    paid = sorted((line.product_id, line.quantity, line.unit_price_minor) for line in invoice.lines)
    refunded = sorted(
        (line.product_id, line.quantity, line.unit_price_minor) for line in refund.lines
    )
    mismatch = [
        name
        for name, same in (
            ("customer", invoice.customer_id == refund.customer_id),
            ("currency", invoice.currency == refund.currency),
            ("total", invoice.total_minor == refund.total_minor),
            ("lines", paid == refunded),
        )
        if not same
    ]
    if mismatch:
        raise RefundDoesNotMatch(
            f"the refund of order {refund.order_id} differs from invoice {invoice.number} in: "
            + ", ".join(mismatch)
        )
    lines = tuple(
        DocumentLine(
            line.product_id,
            line.quantity,
            -line.unit_price_minor,
            line.vat_rate_bp,
            -line.net_minor,
            -line.vat_minor,
            -line.amount_minor,
        )
        for line in invoice.lines
    )
    return Document(
        id=id, kind=DocumentKind.CREDIT_NOTE, number=number, order_id=invoice.order_id,
        customer_id=invoice.customer_id, currency=invoice.currency, lines=lines,
        issued_at=issued_at, transfer_id=refund.refund_transfer_id,
        credits_id=invoice.id, credits_number=invoice.number,
    )  # fmt: skip
