"""The web service's one table: the login sessions.

A row is found by the SHA-256 of its cookie's id; the tokens are sealed with a key made
from the id itself (AES-GCM, `adapters/sessions.py`), so the table alone, read by anyone,
opens no session and reveals no token.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, String, Table, Text

from flotilla_kit.db import NAMING_CONVENTION, UtcDateTime

__all__ = ["metadata", "sessions"]

metadata = MetaData(naming_convention=NAMING_CONVENTION)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", String(200), nullable=False),
    Column("username", String(200), nullable=False),
    Column("roles", Text, nullable=False),  # a JSON list
    Column("sealed_tokens", Text, nullable=False),
    Column("access_expires_at", UtcDateTime, nullable=False),
    # Which refresh token the session holds (its SHA-256): a claim to spend it names it.
    Column("refresh_token_hash", String(64), nullable=False),
    Column("refresh_claimed_until", UtcDateTime, nullable=True),
    Column("csrf_token", String(64), nullable=False),
    Column("basket", Text, nullable=False),  # JSON: {"lines": [[product_id, quantity]], ...}
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Index("ix_sessions_expires_at", "expires_at"),
    Index("ix_sessions_last_seen_at", "last_seen_at"),
)
