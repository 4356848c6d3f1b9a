"""A document as a PDF: a real PDF that shows its number, lines and totals."""

from __future__ import annotations

import datetime as dt
import uuid

from flotilla_billing.adapters.pdf import render_pdf
from flotilla_billing.domain import (
    ConfirmedOrder,
    OrderLine,
    RefundedOrder,
    VatRates,
    credit_note_for,
    invoice_for,
)
from services.billing.tests.pdfs import pdf_text

NOW = dt.datetime(2026, 12, 7, 9, 30, tzinfo=dt.UTC)
LINES = (OrderLine("apple", 2, 150), OrderLine("thé-vert-ünïcode-✓", 1, 1055))
ORDER = ConfirmedOrder("o-1", "alice", "EUR", 1355, LINES, "t-pay")


def test_an_invoice_and_its_credit_note_render() -> None:
    invoice = invoice_for(
        ORDER, rates=VatRates(default_bp=2000), id=uuid.uuid4(), number="2026-000042",
        issued_at=NOW,
    )  # fmt: skip
    text = pdf_text(render_pdf(invoice, seller="Flotilla shop"))
    assert "Invoice 2026-000042" in text
    assert "alice" in text
    assert "Flotilla shop" in text
    assert "2026-12-07 09:30 UTC" in text
    assert "20 %" in text
    assert "2.50" in text
    assert "13.55 EUR" in text
    assert "thé-vert-ünïcode-?" in text  # beyond Latin-1: drawn as ?, not a failure
    refund = RefundedOrder("o-1", "alice", "EUR", 1355, LINES, "t-refund")
    note = credit_note_for(invoice, refund, id=uuid.uuid4(), number="2026-000043", issued_at=NOW)
    text = pdf_text(render_pdf(note, seller="Flotilla shop"))
    assert "Credit note 2026-000043" in text
    assert "2026-000042" in text
    assert "-13.55 EUR" in text
