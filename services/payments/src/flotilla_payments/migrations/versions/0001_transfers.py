"""The transfer log, Idempotency-Keys, and the append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from flotilla_kit.audit import append_only_ddl

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "transfers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("from_account", sa.String(64), nullable=False),
        sa.Column("to_account", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reference", sa.String(140), nullable=False),
        sa.Column("initiator", sa.String(128), nullable=False),
        sa.Column("required_owner", sa.String(128), nullable=True),
        sa.Column("path", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("refusal", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_transfers_amount_positive"),
        sa.CheckConstraint("from_account <> to_account", name="ck_transfers_two_accounts"),
        sa.CheckConstraint("path IN ('local', '2pc')", name="ck_transfers_path_known"),
        sa.CheckConstraint(
            "state IN ('preparing', 'committing', 'aborting', 'committed', 'aborted')",
            name="ck_transfers_state_known",
        ),
        sa.CheckConstraint(
            "(state IN ('aborting', 'aborted') AND refusal IS NOT NULL)"
            " OR (state NOT IN ('aborting', 'aborted') AND refusal IS NULL)",
            name="ck_transfers_refusal_when_aborted",
        ),
        sa.CheckConstraint(
            "path = '2pc' OR state NOT IN ('committing', 'aborting')",
            name="ck_transfers_local_in_one_step",
        ),
        sa.CheckConstraint("attempts >= 0", name="ck_transfers_attempts_not_negative"),
        sa.PrimaryKeyConstraint("id", name="pk_transfers"),
    )
    op.create_index(
        "ix_transfers_initiator_created_at", "transfers", ["initiator", "created_at", "id"]
    )
    op.create_index("ix_transfers_state_next_attempt_at", "transfers", ["state", "next_attempt_at"])
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
    op.drop_index("ix_transfers_state_next_attempt_at", table_name="transfers")
    op.drop_index("ix_transfers_initiator_created_at", table_name="transfers")
    op.drop_table("transfers")
