"""The inventory's tables. That stock never goes negative is said by CHECK constraints
(on hand, held, and on hand minus held): it holds whatever code writes to the table and
however many transactions race, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
)

from flotilla_inventory.domain import (
    CURRENCIES,
    MAX_ON_HAND,
    MAX_PRICE_MINOR,
    MAX_QUANTITY,
    NAME_LENGTH,
    PRODUCT_ID_LENGTH,
    Refusal,
    ReservationState,
)
from flotilla_kit.audit import audit_table
from flotilla_kit.db import NAMING_CONVENTION, UtcDateTime
from flotilla_kit.events import outbox_table
from flotilla_kit.idempotency import idempotency_table

__all__ = [
    "audit_events",
    "idempotency_keys",
    "metadata",
    "outbox",
    "products",
    "reservation_lines",
    "reservations",
]

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _one_of(column: str, values: Iterable[object]) -> str:
    listed = ", ".join(f"'{v}'" for v in sorted(str(v) for v in values))
    return f"{column} IN ({listed})"


products = Table(
    "products",
    metadata,
    Column("id", String(PRODUCT_ID_LENGTH), primary_key=True),
    Column("sku", String(64), nullable=False, unique=True),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("price_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("on_hand", BigInteger, nullable=False),
    Column("held", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    CheckConstraint(f"price_minor > 0 AND price_minor <= {MAX_PRICE_MINOR}", name="price_range"),
    CheckConstraint(_one_of("currency", CURRENCIES), name="currency_known"),
    CheckConstraint(f"on_hand >= 0 AND on_hand <= {MAX_ON_HAND}", name="on_hand_range"),
    CheckConstraint("held >= 0", name="held_not_negative"),
    CheckConstraint("on_hand - held >= 0", name="available_not_negative"),
    CheckConstraint("version >= 1", name="version_positive"),
)

# One row per reservation id the service has answered for with something lasting: a hold
# (and what became of it), a refusal that depends on the stock, or a tombstone.
reservations = Table(
    "reservations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("refusal", String(32), nullable=True),
    Column("detail", String(300), nullable=False),
    Column("short_products", Text, nullable=False),  # JSON list of product ids
    Column("fingerprint", String(64), nullable=True),  # NULL only in a tombstone
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    CheckConstraint(_one_of("state", ReservationState), name="state_known"),
    CheckConstraint(f"refusal IS NULL OR ({_one_of('refusal', Refusal)})", name="refusal_known"),
    CheckConstraint(
        "(state = 'refused' AND refusal IS NOT NULL) OR (state <> 'refused' AND refusal IS NULL)",
        name="refusal_iff_refused",
    ),
    CheckConstraint("state <> 'held' OR expires_at IS NOT NULL", name="held_has_deadline"),
    CheckConstraint("state = 'held' OR decided_at IS NOT NULL", name="decided_unless_held"),
    CheckConstraint("fingerprint IS NOT NULL OR state = 'released'", name="tombstone_released"),
    # The sweeper's question: HELD, deadline passed.
    Index("ix_reservations_state_expires_at", "state", "expires_at"),
)

reservation_lines = Table(
    "reservation_lines",
    metadata,
    Column("reservation_id", String(64), ForeignKey("reservations.id"), primary_key=True),
    Column("product_id", String(PRODUCT_ID_LENGTH), ForeignKey("products.id"), primary_key=True),
    Column("quantity", BigInteger, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    CheckConstraint(f"quantity >= 1 AND quantity <= {MAX_QUANTITY}", name="quantity_range"),
    CheckConstraint("unit_price_minor > 0", name="unit_price_positive"),
)

idempotency_keys = idempotency_table(metadata)
audit_events = audit_table(metadata)
# Stock events, written in the transaction of the change; `relay` publishes them.
outbox = outbox_table(metadata)
