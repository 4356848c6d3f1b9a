"""Billing's tables: documents (invoices and credit notes) and their lines, the counter
of each year's numbers, and the outbox and inbox of events (`flotilla_kit.events`).

What must hold whatever code writes the rows is a constraint: a known kind; one invoice
and one credit note per order; a number unique and equal to its year and place; a credit
note names the invoice it credits, an invoice names none; net + VAT = gross on every line
and in the totals; an invoice's total positive, a credit note's negative; a line's gross
is its quantity times its unit price.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    Uuid,
)

from flotilla_kit.db import NAMING_CONVENTION, UtcDateTime
from flotilla_kit.events import inbox_table, outbox_table

__all__ = ["document_lines", "document_numbers", "documents", "inbox", "metadata", "outbox"]

metadata = MetaData(naming_convention=NAMING_CONVENTION)

documents = Table(
    "documents",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("year", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("number", String(16), nullable=False, unique=True),
    Column("order_id", String(64), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("net_minor", BigInteger, nullable=False),
    Column("vat_minor", BigInteger, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("transfer_id", String(64), nullable=True),
    Column("credits_id", Uuid(), ForeignKey("documents.id"), nullable=True),
    Column("credits_number", String(16), nullable=True),
    Column("issued_at", UtcDateTime(), nullable=False),
    CheckConstraint("kind IN ('invoice', 'credit_note')", name="kind_known"),
    CheckConstraint("year BETWEEN 1 AND 9999 AND seq >= 1", name="number_in_range"),
    CheckConstraint("net_minor + vat_minor = total_minor", name="totals_add_up"),
    CheckConstraint(
        "(kind = 'invoice' AND total_minor > 0 AND credits_id IS NULL"
        " AND credits_number IS NULL)"
        " OR (kind = 'credit_note' AND total_minor < 0 AND credits_id IS NOT NULL"
        " AND credits_number IS NOT NULL)",
        name="kind_shape",
    ),
    UniqueConstraint("year", "seq", name="uq_documents_year_seq"),
    UniqueConstraint("order_id", "kind", name="uq_documents_order_id_kind"),
    Index("ix_documents_customer_id_year_seq", "customer_id", "year", "seq"),
)

document_lines = Table(
    "document_lines",
    metadata,
    Column("document_id", Uuid(), ForeignKey("documents.id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("product_id", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("vat_rate_bp", Integer, nullable=False),
    Column("net_minor", BigInteger, nullable=False),
    Column("vat_minor", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    CheckConstraint("quantity BETWEEN 1 AND 10000", name="quantity_in_range"),
    CheckConstraint("vat_rate_bp BETWEEN 0 AND 10000", name="rate_in_range"),
    CheckConstraint("net_minor + vat_minor = amount_minor", name="line_adds_up"),
    CheckConstraint("quantity * unit_price_minor = amount_minor", name="amount_is_price"),
)

# One row per year: the last place handed out. Taking the next one is an UPDATE of that
# row, so it is held (row lock / SQLite's write lock) until the document's transaction
# ends: a concurrent issuer waits, and a rollback gives the number back.
document_numbers = Table(
    "document_numbers",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("last_seq", Integer, nullable=False),
    CheckConstraint("last_seq >= 0", name="last_seq_not_negative"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
