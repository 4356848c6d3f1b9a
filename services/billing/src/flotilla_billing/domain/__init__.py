"""Billing rules and types: documents, their numbers, VAT. No I/O, no framework."""

from flotilla_billing.domain.documents import (
    ConfirmedOrder,
    Document,
    DocumentKind,
    DocumentLine,
    OrderLine,
    RefundDoesNotMatch,
    RefundedOrder,
    credit_note_for,
    format_number,
    invoice_for,
    parse_number,
)
from flotilla_billing.domain.events import INVOICE_ISSUED, SERVICE, issued_event
from flotilla_billing.domain.vat import BASIS_POINTS, MAX_RATE_BP, VatRates, split_gross

__all__ = [
    "BASIS_POINTS",
    "INVOICE_ISSUED",
    "MAX_RATE_BP",
    "SERVICE",
    "ConfirmedOrder",
    "Document",
    "DocumentKind",
    "DocumentLine",
    "OrderLine",
    "RefundDoesNotMatch",
    "RefundedOrder",
    "VatRates",
    "credit_note_for",
    "format_number",
    "invoice_for",
    "issued_event",
    "parse_number",
    "split_gross",
]
