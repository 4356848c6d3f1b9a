"""Products and their stock, reservations and their lines, Idempotency-Keys, and the
append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from flotilla_kit.audit import append_only_ddl

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out (not imported from the domain): a migration is history and must not change
# when the code does.
_CURRENCIES = "'AUD', 'CAD', 'CHF', 'CZK', 'DKK', 'EUR', 'GBP', 'JPY', 'NOK', 'PLN', 'SEK', 'USD'"
_STATES = "'committed', 'expired', 'held', 'refused', 'released'"
_REFUSALS = "'already_released', 'invalid', 'out_of_stock', 'unknown_product'"


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("on_hand", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "price_minor > 0 AND price_minor <= 1000000000000", name="ck_products_price_range"
        ),
        sa.CheckConstraint(f"currency IN ({_CURRENCIES})", name="ck_products_currency_known"),
        sa.CheckConstraint(
            "on_hand >= 0 AND on_hand <= 1000000000", name="ck_products_on_hand_range"
        ),
        sa.CheckConstraint("held >= 0", name="ck_products_held_not_negative"),
        sa.CheckConstraint("on_hand - held >= 0", name="ck_products_available_not_negative"),
        sa.CheckConstraint("version >= 1", name="ck_products_version_positive"),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
        sa.UniqueConstraint("sku", name="uq_products_sku"),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("refusal", sa.String(32), nullable=True),
        sa.Column("detail", sa.String(300), nullable=False),
        sa.Column("short_products", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"state IN ({_STATES})", name="ck_reservations_state_known"),
        sa.CheckConstraint(
            f"refusal IS NULL OR (refusal IN ({_REFUSALS}))", name="ck_reservations_refusal_known"
        ),
        sa.CheckConstraint(
            "(state = 'refused' AND refusal IS NOT NULL)"
            " OR (state <> 'refused' AND refusal IS NULL)",
            name="ck_reservations_refusal_iff_refused",
        ),
        sa.CheckConstraint(
            "state <> 'held' OR expires_at IS NOT NULL", name="ck_reservations_held_has_deadline"
        ),
        sa.CheckConstraint(
            "state = 'held' OR decided_at IS NOT NULL", name="ck_reservations_decided_unless_held"
        ),
        sa.CheckConstraint(
            "fingerprint IS NOT NULL OR state = 'released'",
            name="ck_reservations_tombstone_released",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_reservations"),
    )
    op.create_index("ix_reservations_state_expires_at", "reservations", ["state", "expires_at"])
    op.create_table(
        "reservation_lines",
        sa.Column("reservation_id", sa.String(64), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.CheckConstraint(
            "quantity >= 1 AND quantity <= 10000", name="ck_reservation_lines_quantity_range"
        ),
        sa.CheckConstraint("unit_price_minor > 0", name="ck_reservation_lines_unit_price_positive"),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservations.id"],
            name="fk_reservation_lines_reservation_id_reservations",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name="fk_reservation_lines_product_id_products"
        ),
        sa.PrimaryKeyConstraint("reservation_id", "product_id", name="pk_reservation_lines"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name="pk_idempotency_keys"),
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
        sa.UniqueConstraint("hash", name="uq_audit_events_hash"),
    )
    for statement in append_only_ddl(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    # Dropping the table drops its triggers; the function (PostgreSQL) goes separately.
    op.drop_table("audit_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    op.drop_table("idempotency_keys")
    op.drop_table("reservation_lines")
    op.drop_index("ix_reservations_state_expires_at", table_name="reservations")
    op.drop_table("reservations")
    op.drop_table("products")
