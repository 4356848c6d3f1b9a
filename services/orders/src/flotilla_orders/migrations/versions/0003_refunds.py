"""Refunds of confirmed orders: the states REFUNDING and REFUNDED, the step
`refunding-order`, the refusal of the last refund, and the history's refunds.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0001 named its CHECKs plainly, so the naming convention was applied to them once more
# (`ck_orders_ck_orders_...`): those are the names to drop. New names go through `op.f`.
_OLD = "ck_orders_ck_orders_"

_STEPS_BEFORE = "'reserving', 'paying', 'committing', 'refunding', 'releasing', 'done'"
_STEPS = "'reserving', 'paying', 'committing', 'refunding', 'releasing', 'refunding-order', 'done'"

# name -> (before, after); None: the constraint is new.
_CHANGED: dict[str, tuple[str | None, str]] = {
    "state_known": (
        "state IN ('PENDING', 'CONFIRMED', 'CANCELLED')",
        "state IN ('PENDING', 'CONFIRMED', 'CANCELLED', 'REFUNDING', 'REFUNDED')",
    ),
    "step_known": (f"step IN ({_STEPS_BEFORE})", f"step IN ({_STEPS})"),
    "pending_while_running": (
        "(step = 'done' AND state IN ('CONFIRMED', 'CANCELLED'))"
        " OR (step <> 'done' AND state = 'PENDING')",
        "(step = 'done' AND state IN ('CONFIRMED', 'CANCELLED', 'REFUNDED'))"
        " OR (step = 'refunding-order' AND state = 'REFUNDING')"
        " OR (step NOT IN ('done', 'refunding-order') AND state = 'PENDING')",
    ),
    "total_once_held": (
        "total_minor IS NOT NULL OR (step IN ('reserving', 'releasing', 'done')"
        " AND state <> 'CONFIRMED')",
        "total_minor IS NOT NULL OR (step IN ('reserving', 'releasing', 'done')"
        " AND state NOT IN ('CONFIRMED', 'REFUNDING', 'REFUNDED'))",
    ),
    "paid_before_commit": (
        "payment_transfer_id IS NOT NULL"
        " OR (step NOT IN ('committing', 'refunding') AND state <> 'CONFIRMED')",
        "payment_transfer_id IS NOT NULL"
        " OR (step NOT IN ('committing', 'refunding')"
        " AND state NOT IN ('CONFIRMED', 'REFUNDING', 'REFUNDED'))",
    ),
    "refunded_with_transfer": (None, "state <> 'REFUNDED' OR refund_transfer_id IS NOT NULL"),
    "refusal_when_confirmed": (None, "refund_refusal IS NULL OR state = 'CONFIRMED'"),
}


def upgrade() -> None:
    # SQLite cannot change a CHECK: batch mode rebuilds the table (plain ALTERs on
    # PostgreSQL). Every existing row satisfies the new constraints: no order is
    # REFUNDING or REFUNDED yet.
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("refund_refusal", sa.String(64), nullable=True))
        for name, (before, _) in _CHANGED.items():
            if before is not None:
                batch.drop_constraint(op.f(_OLD + name), type_="check")
        for name, (_, after) in _CHANGED.items():
            batch.create_check_constraint(op.f(f"ck_orders_{name}"), after)
    op.create_table(
        "history_refunds",
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("refund_transfer_id", sa.String(64), nullable=False),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_history_refunds")),
    )


def downgrade() -> None:
    # An order that is REFUNDING or REFUNDED breaks the old constraints: the downgrade
    # fails there (nothing is rewritten to fit).
    op.drop_table("history_refunds")
    with op.batch_alter_table("orders") as batch:
        for name in _CHANGED:
            batch.drop_constraint(op.f(f"ck_orders_{name}"), type_="check")
        for name, (before, _) in _CHANGED.items():
            if before is not None:
                batch.create_check_constraint(op.f(_OLD + name), before)
        batch.drop_column("refund_refusal")
