"""The orders service's tables: orders and their lines (the saga's durable state, and
the refund of a confirmed order), Idempotency-Keys, the outbox and inbox of events
(`flotilla_kit.events`), and the order history: a read model built only from events,
never from the orders table.

The rules that must hold whatever code writes the rows are CHECK constraints: a known
state, step and reason; PENDING exactly while the saga runs, REFUNDING exactly while a
confirmed order's refund runs; a reason exactly when the order is being (or has been)
cancelled; a total once the stock is held; a payment transfer once paid; a refund
transfer once REFUNDED; a refund refusal only on a CONFIRMED order; no lease on a
finished order; quantities in 1..10000, prices and
totals not negative.
"""

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
    Text,
    UniqueConstraint,
    Uuid,
)

from flotilla_kit.db import NAMING_CONVENTION, UtcDateTime
from flotilla_kit.events import inbox_table, outbox_table
from flotilla_kit.idempotency import idempotency_table

__all__ = [
    "history_orders",
    "history_payments",
    "history_refunds",
    "idempotency_keys",
    "inbox",
    "metadata",
    "order_lines",
    "orders",
    "outbox",
]

metadata = MetaData(naming_convention=NAMING_CONVENTION)

_STEPS = "'reserving', 'paying', 'committing', 'refunding', 'releasing', 'refunding-order', 'done'"
# The constraints the refund of a confirmed order changed or added (migration 0003 repeats
# them: a migration stays as it was written).
_STATE_KNOWN = "state IN ('PENDING', 'CONFIRMED', 'CANCELLED', 'REFUNDING', 'REFUNDED')"
_STEP_KNOWN = f"step IN ({_STEPS})"
_PENDING_WHILE_RUNNING = (
    "(step = 'done' AND state IN ('CONFIRMED', 'CANCELLED', 'REFUNDED'))"
    " OR (step = 'refunding-order' AND state = 'REFUNDING')"
    " OR (step NOT IN ('done', 'refunding-order') AND state = 'PENDING')"
)
_TOTAL_ONCE_HELD = (
    "total_minor IS NOT NULL OR (step IN ('reserving', 'releasing', 'done')"
    " AND state NOT IN ('CONFIRMED', 'REFUNDING', 'REFUNDED'))"
)
_PAID_BEFORE_COMMIT = (
    "payment_transfer_id IS NOT NULL"
    " OR (step NOT IN ('committing', 'refunding')"
    " AND state NOT IN ('CONFIRMED', 'REFUNDING', 'REFUNDED'))"
)
_REFUNDED_WITH_TRANSFER = "state <> 'REFUNDED' OR refund_transfer_id IS NOT NULL"
_REFUSAL_WHEN_CONFIRMED = "refund_refusal IS NULL OR state = 'CONFIRMED'"
_REASONS = (
    "'out-of-stock', 'insufficient-funds', 'payment-refused', 'payment-unavailable', "
    "'inventory-unavailable', 'reservation-expired'"
)

orders = Table(
    "orders",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("payment_account", String(64), nullable=False),
    Column("shop_account", String(64), nullable=False),
    Column("shop_owner", String(128), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("state", String(16), nullable=False),
    Column("step", String(16), nullable=False),
    Column("reason", String(32), nullable=True),
    Column("total_minor", BigInteger, nullable=True),
    Column("payment_transfer_id", String(64), nullable=True),
    Column("refund_transfer_id", String(64), nullable=True),
    Column("pay_attempt", Integer, nullable=False),
    Column("refund_attempt", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("reserve_deadline", UtcDateTime(), nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", UtcDateTime(), nullable=True),
    Column("retries", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    # Why payments refused the last refund of this (still CONFIRMED) order.
    Column("refund_refusal", String(64), nullable=True),
    CheckConstraint(_STATE_KNOWN, name="state_known"),
    CheckConstraint(_STEP_KNOWN, name="step_known"),
    CheckConstraint(f"reason IS NULL OR reason IN ({_REASONS})", name="reason_known"),
    CheckConstraint(_PENDING_WHILE_RUNNING, name="pending_while_running"),
    CheckConstraint(
        "((state = 'CANCELLED' OR step IN ('refunding', 'releasing')) AND reason IS NOT NULL)"
        " OR (state <> 'CANCELLED' AND step NOT IN ('refunding', 'releasing')"
        " AND reason IS NULL)",
        name="reason_when_cancelling",
    ),
    CheckConstraint(_TOTAL_ONCE_HELD, name="total_once_held"),
    CheckConstraint("total_minor IS NULL OR total_minor > 0", name="total_positive"),
    CheckConstraint(_PAID_BEFORE_COMMIT, name="paid_before_commit"),
    CheckConstraint(_REFUNDED_WITH_TRANSFER, name="refunded_with_transfer"),
    CheckConstraint(_REFUSAL_WHEN_CONFIRMED, name="refusal_when_confirmed"),
    CheckConstraint("pay_attempt >= 1 AND refund_attempt >= 1", name="attempts_counted"),
    CheckConstraint("version >= 0 AND retries >= 0", name="counters_not_negative"),
    CheckConstraint("step <> 'done' OR lease_owner IS NULL", name="no_lease_when_done"),
    Index("ix_orders_customer_id_created_at", "customer_id", "created_at", "id"),
    Index("ix_orders_step_next_attempt_at", "step", "next_attempt_at"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", Uuid(), ForeignKey("orders.id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("product_id", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=True),
    CheckConstraint("quantity BETWEEN 1 AND 10000", name="quantity_in_range"),
    CheckConstraint("unit_price_minor IS NULL OR unit_price_minor >= 0", name="price_not_negative"),
    UniqueConstraint("order_id", "product_id", name="uq_order_lines_order_id_product_id"),
)

idempotency_keys = idempotency_table(metadata)
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

# The read model. Each table holds what one kind of event says, keyed by what it is about;
# an entry's payment state is joined at read time, so events may arrive in any order.
history_orders = Table(
    "history_orders",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(32), nullable=True),
    Column("total_minor", BigInteger, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("lines", Text, nullable=True),  # JSON, as the order_confirmed event gives them
    Column("payment_transfer_id", String(64), nullable=True),
    Column("refund_transfer_id", String(64), nullable=True),
    Column("finished_at", UtcDateTime(), nullable=False),  # the event's time
    Column("event_id", String(36), nullable=False),
    CheckConstraint("state IN ('CONFIRMED', 'CANCELLED')", name="state_final"),
    Index("ix_history_orders_customer_id_finished_at", "customer_id", "finished_at", "order_id"),
)

# `order_refunded`: which orders were refunded after they were confirmed (joined to their
# `history_orders` entry at read time, so it may arrive before the confirmation).
history_refunds = Table(
    "history_refunds",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("refund_transfer_id", String(64), nullable=False),
    Column("refunded_at", UtcDateTime(), nullable=False),  # the event's time
    Column("event_id", String(36), nullable=False),
)

history_payments = Table(
    "history_payments",
    metadata,
    Column("transfer_id", String(64), primary_key=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("committed_at", UtcDateTime(), nullable=False),  # the event's time
    Column("event_id", String(36), nullable=False),
)
