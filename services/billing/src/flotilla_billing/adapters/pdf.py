"""A document as a PDF (fpdf2, pure Python: no system libraries, in the service's image
as it is).

The core PDF fonts (Helvetica) cover Latin-1; a character beyond it (in a product id)
is drawn as `?` rather than embedding a Unicode font (hundreds of KiB per process) for
identifiers that are ASCII in practice. Amounts are written with their currency's minor
units (`flotilla_kit.money`).
"""

from __future__ import annotations

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from flotilla_billing.domain import Document, DocumentKind
from flotilla_kit.money import CURRENCIES

__all__ = ["render_pdf"]

_TITLES = {DocumentKind.INVOICE: "Invoice", DocumentKind.CREDIT_NOTE: "Credit note"}
# Columns of the lines' table: header, width (mm), alignment.
_COLUMNS = (
    ("Product", 56, "L"),
    ("Qty", 14, "R"),
    ("Unit price", 28, "R"),
    ("VAT", 16, "R"),
    ("Net", 26, "R"),
    ("VAT amount", 24, "R"),
    ("Gross", 26, "R"),
)


def _latin1(text: str) -> str:
    return text.encode("latin-1", errors="replace").decode("latin-1")


def _money(amount_minor: int, currency: str) -> str:
    exponent = CURRENCIES.get(currency, 2)
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**exponent)
    return f"{sign}{whole:,}.{fraction:0{exponent}d}" if exponent else f"{sign}{whole:,}"


def _rate(rate_bp: int) -> str:
    return f"{rate_bp / 100:g} %"


def render_pdf(document: Document, *, seller: str) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(f"{_TITLES[document.kind]} {document.number}")
    pdf.set_creator("Flotilla billing")
    pdf.set_creation_date(document.issued_at)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=16)
    pdf.cell(text=_latin1(f"{_TITLES[document.kind]} {document.number}"),
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
    pdf.set_font("Helvetica", size=10)
    facts = [
        ("Seller", seller),
        ("Customer", document.customer_id),
        ("Order", document.order_id),
        ("Issued", document.issued_at.strftime("%Y-%m-%d %H:%M UTC")),
        ("Currency", document.currency),
    ]
    if document.credits_number is not None:
        facts.append(("Credits invoice", document.credits_number))
    if document.transfer_id is not None:
        label = "Refund" if document.kind is DocumentKind.CREDIT_NOTE else "Payment"
        facts.append((label, document.transfer_id))
    pdf.ln(4)
    for label, value in facts:
        pdf.cell(w=36, text=f"{label}:")
        pdf.cell(text=_latin1(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(6)
    pdf.set_font("Helvetica", style="B", size=9)
    for header, width, align in _COLUMNS:
        pdf.cell(w=width, h=7, text=header, border="B", align=align)
    pdf.ln()
    pdf.set_font("Helvetica", size=9)
    money = document.currency
    for line in document.lines:
        cells = (
            _latin1(line.product_id), str(line.quantity), _money(line.unit_price_minor, money),
            _rate(line.vat_rate_bp), _money(line.net_minor, money),
            _money(line.vat_minor, money), _money(line.amount_minor, money),
        )  # fmt: skip
        for text, (_, width, align) in zip(cells, _COLUMNS, strict=True):
            pdf.cell(w=width, h=6, text=text, align=align)
        pdf.ln()
    pdf.ln(4)
    pdf.set_font("Helvetica", style="B", size=10)
    for label, amount in (
        ("Net", document.net_minor),
        ("VAT", document.vat_minor),
        ("Total (VAT included)", document.total_minor),
    ):
        pdf.cell(w=140, h=6, text=label, align="R")
        pdf.cell(w=50, h=6, text=f"{_money(amount, money)} {money}", align="R",
                 new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
    return bytes(pdf.output())
