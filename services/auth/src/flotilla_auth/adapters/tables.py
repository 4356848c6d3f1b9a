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
    String,
    Table,
    Text,
)

from flotilla_kit.db import NAMING_CONVENTION, UtcDateTime

__all__ = ["metadata", "refresh_tokens", "signing_keys", "users"]

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
    # 1 on the active key, NULL on every other: the unique constraint lets the database
    # itself refuse a second active key when instances race to create one.
    Column("active_marker", Integer, nullable=True, unique=True),
    CheckConstraint(
        "(status = 'active' AND active_marker = 1 AND retired_at IS NULL)"
        " OR (status = 'retired' AND active_marker IS NULL AND retired_at IS NOT NULL)",
        name="status",
    ),
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
    Column("revoked_at", UtcDateTime(), nullable=True),
)
