"""The 2PC participant: holds on accounts, branches, same-shard transfers.

A customer's available balance (balance minus holds) may not go negative: a CHECK
constraint, so that two transactions racing to hold the same money cannot both win.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Names go through `op.f`: they are final. (Names given plainly get the metadata's naming
# convention applied once more, which is how 0001's CHECKs came to be named
# `ck_accounts_ck_accounts_...` in the database.)


def upgrade() -> None:
    # SQLite cannot add a CHECK to a table: batch mode rebuilds it (a plain ALTER on
    # PostgreSQL).
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("held_minor", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.create_check_constraint(op.f("ck_accounts_held_not_negative"), "held_minor >= 0")
        batch.create_check_constraint(
            op.f("ck_accounts_customer_available_not_negative"),
            "kind = 'system' OR balance_minor - held_minor >= 0",
        )
    op.create_table(
        "branches",
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("branch_id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("direction", sa.String(8), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("refusal", sa.String(32), nullable=True),
        sa.Column("reference", sa.String(140), nullable=False),
        sa.Column("posting_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('prepared', 'committed', 'aborted')", name=op.f("ck_branches_status_known")
        ),
        sa.CheckConstraint(
            "direction IS NULL OR direction IN ('debit', 'credit')",
            name=op.f("ck_branches_direction_known"),
        ),
        sa.CheckConstraint(
            "amount_minor IS NULL OR amount_minor > 0", name=op.f("ck_branches_amount_positive")
        ),
        sa.CheckConstraint(
            "status = 'aborted' OR (account_id IS NOT NULL AND direction IS NOT NULL"
            " AND amount_minor IS NOT NULL AND currency IS NOT NULL)",
            name=op.f("ck_branches_terms_unless_tombstone"),
        ),
        sa.CheckConstraint(
            "refusal IS NULL OR status = 'aborted'", name=op.f("ck_branches_refusal_only_aborted")
        ),
        sa.CheckConstraint(
            "(status = 'committed' AND posting_id IS NOT NULL)"
            " OR (status <> 'committed' AND posting_id IS NULL)",
            name=op.f("ck_branches_posting_iff_committed"),
        ),
        sa.ForeignKeyConstraint(
            ["posting_id"], ["postings.id"], name="fk_branches_posting_id_postings"
        ),
        sa.PrimaryKeyConstraint("transfer_id", "branch_id", name="pk_branches"),
    )
    op.create_index("ix_branches_status_created_at", "branches", ["status", "created_at"])
    op.create_table(
        "local_transfers",
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("from_account", sa.String(64), nullable=False),
        sa.Column("to_account", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reference", sa.String(140), nullable=False),
        sa.Column("refusal", sa.String(32), nullable=True),
        sa.Column("detail", sa.String(200), nullable=False),
        sa.Column("posting_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_local_transfers_amount_positive")),
        sa.CheckConstraint(
            "refusal IS NULL OR posting_id IS NULL",
            name=op.f("ck_local_transfers_applied_or_refused"),
        ),
        sa.ForeignKeyConstraint(
            ["posting_id"], ["postings.id"], name="fk_local_transfers_posting_id_postings"
        ),
        sa.PrimaryKeyConstraint("transfer_id", name="pk_local_transfers"),
    )


def downgrade() -> None:
    op.drop_table("local_transfers")
    op.drop_index("ix_branches_status_created_at", table_name="branches")
    op.drop_table("branches")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint(op.f("ck_accounts_customer_available_not_negative"), type_="check")
        batch.drop_constraint(op.f("ck_accounts_held_not_negative"), type_="check")
        batch.drop_column("held_minor")
