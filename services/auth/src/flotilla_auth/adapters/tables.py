"""The auth database: tables as SQLAlchemy Core metadata (the migrations must match it)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
)

from flotilla_kit.audit import AuditLog, audit_table
from flotilla_kit.db import NAMING_CONVENTION, UtcDateTime

__all__ = [
    "audit_events",
    "audit_log",
    "client_assertions",
    "login_throttles",
    "metadata",
    "refresh_tokens",
    "signing_keys",
    "users",
]

metadata = MetaData(naming_convention=NAMING_CONVENTION)

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("locked", Boolean, nullable=False, server_default=false()),
)

# The CHECK keeps each state's columns consistent; the two unique markers (1 on the one key
# in that state, NULL on every other) let the database itself refuse a second active or a
# second staged key when instances race.
SIGNING_KEY_STATES = (
    "(status = 'next' AND next_marker = 1 AND active_marker IS NULL"
    " AND activated_at IS NULL AND retired_at IS NULL)"
    " OR (status = 'active' AND active_marker = 1 AND next_marker IS NULL"
    " AND activated_at IS NOT NULL AND retired_at IS NULL)"
    " OR (status = 'retired' AND active_marker IS NULL AND next_marker IS NULL"
    " AND retired_at IS NOT NULL)"
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("public_jwk", JSON, nullable=False),
    Column("private_key_pem", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("retired_at", UtcDateTime(), nullable=True),
    Column("active_marker", Integer, nullable=True, unique=True),
    Column("activated_at", UtcDateTime(), nullable=True),
    Column("next_marker", Integer, nullable=True, unique=True),
    CheckConstraint(SIGNING_KEY_STATES, name="status"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False, index=True),
    Column(
        "user_id",
        String(36),
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scope", Text, nullable=False),
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("used_at", UtcDateTime(), nullable=True),
    # Indexed: the revocation list asks for everything revoked in the last minutes.
    Column("revoked_at", UtcDateTime(), nullable=True, index=True),
)

# Failed-login counters shared by every instance: `account:<sha256 of the username>` and
# `ip:<address>`.
login_throttles = Table(
    "login_throttles",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_started_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
    Column("locked_until", UtcDateTime(), nullable=True),
)

# Client-assertion ids already spent, kept until the assertion expires (RFC 7523 3.1).
client_assertions = Table(
    "client_assertions",
    metadata,
    Column("client_id", String(64), nullable=False),
    Column("jti", String(128), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
    PrimaryKeyConstraint("client_id", "jti"),
)

audit_events = audit_table(metadata)
audit_log = AuditLog(audit_events)
