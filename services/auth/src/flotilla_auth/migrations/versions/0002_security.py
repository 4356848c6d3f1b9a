"""Key rotation states, admin locks, login throttles, spent client assertions, audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-15
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from flotilla_kit.audit import append_only_ddl

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A copy, not an import: a migration must keep meaning what it meant when it was written.
_KEY_STATES = (
    "(status = 'next' AND next_marker = 1 AND active_marker IS NULL"
    " AND activated_at IS NULL AND retired_at IS NULL)"
    " OR (status = 'active' AND active_marker = 1 AND next_marker IS NULL"
    " AND activated_at IS NOT NULL AND retired_at IS NULL)"
    " OR (status = 'retired' AND active_marker IS NULL AND next_marker IS NULL"
    " AND retired_at IS NOT NULL)"
)
_OLD_KEY_STATES = (
    "(status = 'active' AND active_marker = 1 AND retired_at IS NULL)"
    " OR (status = 'retired' AND active_marker IS NULL AND retired_at IS NOT NULL)"
)


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("locked", sa.Boolean(), server_default=sa.false(), nullable=False),
    )

    # On SQLite the batch rebuilds the table (a CHECK cannot be altered in place).
    with op.batch_alter_table("signing_keys") as batch:
        batch.drop_constraint(op.f("ck_signing_keys_status"), type_="check")
        batch.add_column(sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("next_marker", sa.Integer(), nullable=True))
        batch.create_unique_constraint(op.f("uq_signing_keys_next_marker"), ["next_marker"])
    op.execute("UPDATE signing_keys SET activated_at = created_at WHERE status = 'active'")
    with op.batch_alter_table("signing_keys") as batch:
        batch.create_check_constraint(op.f("ck_signing_keys_status"), sa.text(_KEY_STATES))

    op.create_index(
        op.f("ix_refresh_tokens_revoked_at"), "refresh_tokens", ["revoked_at"], unique=False
    )

    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttles")),
    )
    op.create_index(
        op.f("ix_login_throttles_expires_at"), "login_throttles", ["expires_at"], unique=False
    )

    op.create_table(
        "client_assertions",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("jti", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name=op.f("pk_client_assertions")),
    )
    op.create_index(
        op.f("ix_client_assertions_expires_at"), "client_assertions", ["expires_at"], unique=False
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
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
    )
    for statement in append_only_ddl(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    else:
        op.drop_table("audit_events")  # its triggers go with it
    op.drop_index(op.f("ix_client_assertions_expires_at"), table_name="client_assertions")
    op.drop_table("client_assertions")
    op.drop_index(op.f("ix_login_throttles_expires_at"), table_name="login_throttles")
    op.drop_table("login_throttles")
    op.drop_index(op.f("ix_refresh_tokens_revoked_at"), table_name="refresh_tokens")
    # Staged keys have no place in the old schema; retired keys still verify old tokens.
    op.execute("DELETE FROM signing_keys WHERE status = 'next'")
    with op.batch_alter_table("signing_keys") as batch:
        batch.drop_constraint(op.f("ck_signing_keys_status"), type_="check")
        batch.drop_constraint(op.f("uq_signing_keys_next_marker"), type_="unique")
        batch.drop_column("next_marker")
        batch.drop_column("activated_at")
    with op.batch_alter_table("signing_keys") as batch:
        batch.create_check_constraint(op.f("ck_signing_keys_status"), sa.text(_OLD_KEY_STATES))
    op.drop_column("users", "locked")
