"""The coordinator's tables: the transfer log, Idempotency-Keys, the audit log, and the
outbox of the events it publishes (`flotilla.payments.transfer_committed`).

The rules that must hold whatever code writes the rows are CHECK constraints: a positive
amount, two different accounts, a known state and path, a refusal exactly when aborting
or aborted, no phase two for a local transfer.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
)

from flotilla_kit.audit import audit_table
from flotilla_kit.db import NAMING_CONVENTION, UtcDateTime
from flotilla_kit.events import outbox_table
from flotilla_kit.idempotency import idempotency_table

__all__ = ["audit_events", "idempotency_keys", "metadata", "outbox", "transfers"]

metadata = MetaData(naming_convention=NAMING_CONVENTION)

transfers = Table(
    "transfers",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("from_account", String(64), nullable=False),
    Column("to_account", String(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reference", String(140), nullable=False),
    Column("initiator", String(128), nullable=False),
    Column("required_owner", String(128), nullable=True),
    # A service that asked on the initiator's behalf (None: the initiator asked).
    Column("requested_by", String(128), nullable=True),
    Column("path", String(8), nullable=False),
    Column("state", String(16), nullable=False),
    Column("refusal", String(32), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("completed_at", UtcDateTime(), nullable=True),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", UtcDateTime(), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("from_account <> to_account", name="two_accounts"),
    CheckConstraint("path IN ('local', '2pc')", name="path_known"),
    CheckConstraint(
        "state IN ('preparing', 'committing', 'aborting', 'committed', 'aborted')",
        name="state_known",
    ),
    CheckConstraint(
        "(state IN ('aborting', 'aborted') AND refusal IS NOT NULL)"
        " OR (state NOT IN ('aborting', 'aborted') AND refusal IS NULL)",
        name="refusal_when_aborted",
    ),
    CheckConstraint(
        "path = '2pc' OR state NOT IN ('committing', 'aborting')", name="local_in_one_step"
    ),
    CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    Index("ix_transfers_initiator_created_at", "initiator", "created_at", "id"),
    Index("ix_transfers_state_next_attempt_at", "state", "next_attempt_at"),
)

idempotency_keys = idempotency_table(metadata)
audit_events = audit_table(metadata)
outbox = outbox_table(metadata)
