"""The ledger's tables. The rule that a customer balance never goes negative is a CHECK
constraint: it holds whatever code writes to the table."""

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

__all__ = ["accounts", "audit_events", "entries", "idempotency_keys", "metadata", "postings"]

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
    CheckConstraint("kind IN ('customer', 'system')", name="kind_known"),
    CheckConstraint("kind = 'system' OR balance_minor >= 0", name="customer_balance_not_negative"),
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

idempotency_keys = idempotency_table(metadata)
audit_events = audit_table(metadata)
