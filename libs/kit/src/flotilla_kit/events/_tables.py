"""The outbox and inbox tables a service adds to its own metadata (and migrations).

The outbox holds events written in the same transaction as the change they describe;
the relay publishes them in `seq` order and stamps `published_at`. The inbox remembers,
per consumer, which events it has applied, in the same transaction as their effects.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, text

from flotilla_kit.db import UtcDateTime

__all__ = ["EVENT_ID_LENGTH", "SUBJECT_LENGTH", "inbox_table", "outbox_table"]

EVENT_ID_LENGTH = 36  # a canonical UUID
SUBJECT_LENGTH = 255
CONSUMER_LENGTH = 64

_UNPUBLISHED = "published_at IS NULL"
_SEQ = BigInteger().with_variant(Integer, "sqlite")


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        # SQLite: AUTOINCREMENT, so a seq is never handed out twice, even after the newest
        # rows were pruned. PostgreSQL: a bigint identity.
        Column("seq", _SEQ, primary_key=True, autoincrement=True),
        Column("event_id", String(EVENT_ID_LENGTH), nullable=False, unique=True),
        Column("subject", String(SUBJECT_LENGTH), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("published_at", UtcDateTime(), nullable=True),
        # The relay's query: only the (few) rows still waiting, in order.
        Index(
            "ix_outbox_unpublished",
            "seq",
            postgresql_where=text(_UNPUBLISHED),
            sqlite_where=text(_UNPUBLISHED),
        ),
        sqlite_autoincrement=True,
    )


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(CONSUMER_LENGTH), primary_key=True),
        Column("event_id", String(EVENT_ID_LENGTH), primary_key=True),
        Column("subject", String(SUBJECT_LENGTH), nullable=False),
        Column("received_at", UtcDateTime(), nullable=False),
    )
