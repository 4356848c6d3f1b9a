"""Orders and their lines (the checkout saga's durable state), and Idempotency-Keys.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STEPS = "'reserving', 'paying', 'committing', 'refunding', 'releasing', 'done'"
_REASONS = (
    "'out-of-stock', 'insufficient-funds', 'payment-refused', 'payment-unavailable', "
    "'inventory-unavailable', 'reservation-expired'"
)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("payment_account", sa.String(64), nullable=False),
        sa.Column("shop_account", sa.String(64), nullable=False),
        sa.Column("shop_owner", sa.String(128), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("total_minor", sa.BigInteger(), nullable=True),
        sa.Column("payment_transfer_id", sa.String(64), nullable=True),
        sa.Column("refund_transfer_id", sa.String(64), nullable=True),
        sa.Column("pay_attempt", sa.Integer(), nullable=False),
        sa.Column("refund_attempt", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reserve_deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('PENDING', 'CONFIRMED', 'CANCELLED')", name="ck_orders_state_known"
        ),
        sa.CheckConstraint(f"step IN ({_STEPS})", name="ck_orders_step_known"),
        sa.CheckConstraint(
            f"reason IS NULL OR reason IN ({_REASONS})", name="ck_orders_reason_known"
        ),
        sa.CheckConstraint(
            "(step = 'done' AND state IN ('CONFIRMED', 'CANCELLED'))"
            " OR (step <> 'done' AND state = 'PENDING')",
            name="ck_orders_pending_while_running",
        ),
        sa.CheckConstraint(
            "((state = 'CANCELLED' OR step IN ('refunding', 'releasing')) AND reason IS NOT NULL)"
            " OR (state <> 'CANCELLED' AND step NOT IN ('refunding', 'releasing')"
            " AND reason IS NULL)",
            name="ck_orders_reason_when_cancelling",
        ),
        sa.CheckConstraint(
            "total_minor IS NOT NULL OR (step IN ('reserving', 'releasing', 'done')"
            " AND state <> 'CONFIRMED')",
            name="ck_orders_total_once_held",
        ),
        sa.CheckConstraint(
            "total_minor IS NULL OR total_minor > 0", name="ck_orders_total_positive"
        ),
        sa.CheckConstraint(
            "payment_transfer_id IS NOT NULL"
            " OR (step NOT IN ('committing', 'refunding') AND state <> 'CONFIRMED')",
            name="ck_orders_paid_before_commit",
        ),
        sa.CheckConstraint(
            "pay_attempt >= 1 AND refund_attempt >= 1", name="ck_orders_attempts_counted"
        ),
        sa.CheckConstraint("version >= 0 AND retries >= 0", name="ck_orders_counters_not_negative"),
        sa.CheckConstraint(
            "step <> 'done' OR lease_owner IS NULL", name="ck_orders_no_lease_when_done"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
    )
    op.create_index(
        "ix_orders_customer_id_created_at", "orders", ["customer_id", "created_at", "id"]
    )
    op.create_index("ix_orders_step_next_attempt_at", "orders", ["step", "next_attempt_at"])
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("quantity BETWEEN 1 AND 10000", name="ck_order_lines_quantity_in_range"),
        sa.CheckConstraint(
            "unit_price_minor IS NULL OR unit_price_minor >= 0",
            name="ck_order_lines_price_not_negative",
        ),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_order_lines_order_id_orders"),
        sa.PrimaryKeyConstraint("order_id", "line_no", name="pk_order_lines"),
        sa.UniqueConstraint("order_id", "product_id", name="uq_order_lines_order_id_product_id"),
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


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("order_lines")
    op.drop_index("ix_orders_step_next_attempt_at", table_name="orders")
    op.drop_index("ix_orders_customer_id_created_at", table_name="orders")
    op.drop_table("orders")
