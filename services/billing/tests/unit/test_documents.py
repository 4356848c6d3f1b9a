"""Document numbers and credit notes (pure rules)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from flotilla_billing.domain import (
    ConfirmedOrder,
    DocumentKind,
    OrderLine,
    RefundDoesNotMatch,
    RefundedOrder,
    VatRates,
    credit_note_for,
    format_number,
    invoice_for,
    issued_event,
    parse_number,
)

NOW = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
LINES = (OrderLine("apple", 2, 150), OrderLine("book", 1, 1055))
ORDER = ConfirmedOrder("o-1", "alice", "EUR", 1355, LINES, "t-pay")
RATES = VatRates(default_bp=2000, overrides={"book": 550})


def test_numbers_are_year_and_six_digits() -> None:
    assert format_number(2026, 123) == "2026-000123"
    assert format_number(2026, 1_234_567) == "2026-1234567"
    assert parse_number("2026-000123") == (2026, 123)
    assert parse_number("2026-1234567") == (2026, 1_234_567)
    for bad in ("2026-123", "26-000001", "2026-000000", "x", "2026-00000a", "2026-" + "1" * 12):
        assert parse_number(bad) is None, bad
    with pytest.raises(ValueError, match="no document number"):
        format_number(2026, 0)


def test_the_invoice_uses_each_products_rate() -> None:
    invoice = invoice_for(ORDER, rates=RATES, id=uuid.uuid4(), number="2026-000001", issued_at=NOW)
    apple, book = invoice.lines
    assert (apple.vat_rate_bp, apple.net_minor, apple.vat_minor) == (2000, 250, 50)
    assert (book.vat_rate_bp, book.net_minor, book.vat_minor) == (550, 1000, 55)
    assert (invoice.net_minor, invoice.vat_minor, invoice.total_minor) == (1250, 105, 1355)
    assert invoice.kind is DocumentKind.INVOICE
    assert invoice.credits_number is None


def test_a_credit_note_mirrors_its_invoice_at_the_invoices_rates() -> None:
    invoice = invoice_for(ORDER, rates=RATES, id=uuid.uuid4(), number="2026-000001", issued_at=NOW)
    refund = RefundedOrder("o-1", "alice", "EUR", 1355, tuple(reversed(LINES)), "t-refund")
    note = credit_note_for(invoice, refund, id=uuid.uuid4(), number="2026-000002", issued_at=NOW)
    assert note.kind is DocumentKind.CREDIT_NOTE
    assert (note.credits_id, note.credits_number) == (invoice.id, "2026-000001")
    assert note.transfer_id == "t-refund"
    for mine, theirs in zip(note.lines, invoice.lines, strict=True):
        assert mine.quantity == theirs.quantity
        assert mine.vat_rate_bp == theirs.vat_rate_bp
        assert (mine.unit_price_minor, mine.net_minor, mine.vat_minor, mine.amount_minor) == (
            -theirs.unit_price_minor, -theirs.net_minor, -theirs.vat_minor, -theirs.amount_minor,
        )  # fmt: skip
    assert (note.net_minor, note.vat_minor, note.total_minor) == (-1250, -105, -1355)
    event = issued_event(note)
    assert event["kind"] == "credit_note"
    assert event["credits_number"] == "2026-000001"
    assert event["total_minor"] == -1355
    assert event["issued_at"] == "2026-12-07T10:00:00Z"


@pytest.mark.parametrize(
    ("refund", "field"),
    [
        (RefundedOrder("o-1", "bob", "EUR", 1355, LINES, "t"), "customer"),
        (RefundedOrder("o-1", "alice", "USD", 1355, LINES, "t"), "currency"),
        (RefundedOrder("o-1", "alice", "EUR", 300, LINES[:1], "t"), "total, lines"),
    ],
)
def test_a_refund_that_is_not_its_invoices_order_is_refused(
    refund: RefundedOrder, field: str
) -> None:
    invoice = invoice_for(ORDER, rates=RATES, id=uuid.uuid4(), number="2026-000001", issued_at=NOW)
    with pytest.raises(RefundDoesNotMatch, match=field):
        credit_note_for(invoice, refund, id=uuid.uuid4(), number="2026-000002", issued_at=NOW)
