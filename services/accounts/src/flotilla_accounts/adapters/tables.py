"""The ledger's tables. The rule that a customer's available balance (balance minus holds)
never goes negative is a CHECK constraint: it holds whatever code writes to the table,
and however many transactions race."""

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
)

from flotilla_kit.audit import audit_table
from flotilla_kit.db import NAMING_CONVENTION, UtcDateTime
from flotilla_kit.idempotency import idempotency_table

__all__ = [
    "accounts",
    "audit_events",
    "branches",
    "entries",
    "idempotency_keys",
    "local_transfers",
    "metadata",
    "postings",
]

metadata = MetaData(naming_convention=NAMING_CONVENTION)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner_id", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("balance_minor", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("held_minor", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("kind IN ('customer', 'system')", name="kind_known"),
    CheckConstraint("kind = 'system' OR balance_minor >= 0", name="customer_balance_not_negative"),
    CheckConstraint("held_minor >= 0", name="held_not_negative"),
    CheckConstraint(
        "kind = 'system' OR balance_minor - held_minor >= 0",
        name="customer_available_not_negative",
    ),
    Index("ix_accounts_owner_id", "owner_id"),
)

postings = Table(
    "postings",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("reference", String(140), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

entries = Table(
    "entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("posting_id", String(64), ForeignKey("postings.id"), nullable=False),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    CheckConstraint("amount_minor <> 0", name="amount_not_zero"),
    Index("ix_entries_account_id", "account_id", "id"),
)

# One row per (transfer, branch) this shard takes part in. The terms are NULL only in a
# tombstone (an Abort that came before any Prepare).
branches = Table(
    "branches",
    metadata,
    Column("transfer_id", String(64), primary_key=True),
    Column("branch_id", String(32), primary_key=True),
    Column("account_id", String(64), nullable=True),
    Column("direction", String(8), nullable=True),
    Column("amount_minor", BigInteger, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("status", String(16), nullable=False),
    Column("refusal", String(32), nullable=True),
    Column("reference", String(140), nullable=False),
    Column("posting_id", String(64), ForeignKey("postings.id"), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    CheckConstraint("status IN ('prepared', 'committed', 'aborted')", name="status_known"),
    CheckConstraint(
        "direction IS NULL OR direction IN ('debit', 'credit')", name="direction_known"
    ),
    CheckConstraint("amount_minor IS NULL OR amount_minor > 0", name="amount_positive"),
    CheckConstraint(
        "status = 'aborted' OR (account_id IS NOT NULL AND direction IS NOT NULL"
        " AND amount_minor IS NOT NULL AND currency IS NOT NULL)",
        name="terms_unless_tombstone",
    ),
    CheckConstraint("refusal IS NULL OR status = 'aborted'", name="refusal_only_aborted"),
    CheckConstraint(
        "(status = 'committed' AND posting_id IS NOT NULL)"
        " OR (status <> 'committed' AND posting_id IS NULL)",
        name="posting_iff_committed",
    ),
    Index("ix_branches_status_created_at", "status", "created_at"),
)

# Same-shard transfers and their outcome, one row per transfer id: the answer to a repeat.
local_transfers = Table(
    "local_transfers",
    metadata,
    Column("transfer_id", String(64), primary_key=True),
    Column("from_account", String(64), nullable=False),
    Column("to_account", String(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reference", String(140), nullable=False),
    Column("refusal", String(32), nullable=True),
    Column("detail", String(200), nullable=False),
    Column("posting_id", String(64), ForeignKey("postings.id"), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("refusal IS NULL OR posting_id IS NULL", name="applied_or_refused"),
)

idempotency_keys = idempotency_table(metadata)
audit_events = audit_table(metadata)
