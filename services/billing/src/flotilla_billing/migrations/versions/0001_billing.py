"""Documents (invoices and credit notes) and their lines, each year's number counter, and
the outbox and inbox of events (as `flotilla_kit.events` defines them).

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNPUBLISHED = "published_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(16), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.Column("vat_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=True),
        sa.Column("credits_id", sa.Uuid(), nullable=True),
        sa.Column("credits_number", sa.String(16), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('invoice', 'credit_note')", name="ck_documents_kind_known"),
        sa.CheckConstraint(
            "year BETWEEN 1 AND 9999 AND seq >= 1", name="ck_documents_number_in_range"
        ),
        sa.CheckConstraint(
            "net_minor + vat_minor = total_minor", name="ck_documents_totals_add_up"
        ),
        sa.CheckConstraint(
            "(kind = 'invoice' AND total_minor > 0 AND credits_id IS NULL"
            " AND credits_number IS NULL)"
            " OR (kind = 'credit_note' AND total_minor < 0 AND credits_id IS NOT NULL"
            " AND credits_number IS NOT NULL)",
            name="ck_documents_kind_shape",
        ),
        sa.ForeignKeyConstraint(
            ["credits_id"], ["documents.id"], name="fk_documents_credits_id_documents"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
        sa.UniqueConstraint("number", name="uq_documents_number"),
        sa.UniqueConstraint("year", "seq", name="uq_documents_year_seq"),
        sa.UniqueConstraint("order_id", "kind", name="uq_documents_order_id_kind"),
    )
    op.create_index(
        "ix_documents_customer_id_year_seq", "documents", ["customer_id", "year", "seq"]
    )
    op.create_table(
        "document_lines",
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("vat_rate_bp", sa.Integer(), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.Column("vat_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "quantity BETWEEN 1 AND 10000", name="ck_document_lines_quantity_in_range"
        ),
        sa.CheckConstraint(
            "vat_rate_bp BETWEEN 0 AND 10000", name="ck_document_lines_rate_in_range"
        ),
        sa.CheckConstraint(
            "net_minor + vat_minor = amount_minor", name="ck_document_lines_line_adds_up"
        ),
        sa.CheckConstraint(
            "quantity * unit_price_minor = amount_minor",
            name="ck_document_lines_amount_is_price",
        ),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name="fk_document_lines_document_id_documents"
        ),
        sa.PrimaryKeyConstraint("document_id", "line_no", name="pk_document_lines"),
    )
    op.create_table(
        "document_numbers",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.CheckConstraint("last_seq >= 0", name="ck_document_numbers_last_seq_not_negative"),
        sa.PrimaryKeyConstraint("year", name="pk_document_numbers"),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["seq"],
        postgresql_where=sa.text(_UNPUBLISHED),
        sqlite_where=sa.text(_UNPUBLISHED),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_inbox"),
    )


def downgrade() -> None:
    op.drop_table("inbox")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("document_numbers")
    op.drop_table("document_lines")
    op.drop_index("ix_documents_customer_id_year_seq", table_name="documents")
    op.drop_table("documents")
