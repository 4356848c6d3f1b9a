"""Writing events: one INSERT in the caller's transaction."""

from __future__ import annotations

from sqlalchemy import Table, bindparam

from flotilla_kit.db import Query, Transaction
from flotilla_kit.events._cloudevent import CloudEvent, nats_subject

__all__ = ["Outbox"]


class Outbox:
    """The event commits with the change it describes, or not at all: nothing is sent
    from inside a transaction that may still roll back (the relay sends it later)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._insert = Query(
            table.insert().values(
                event_id=bindparam("event_id"),
                subject=bindparam("subject"),
                payload=bindparam("payload"),
                created_at=bindparam("created_at"),
            )
        )

    async def add(
        self, transaction: Transaction, event: CloudEvent, *, route: str | None = None
    ) -> None:
        """`route`: a routing token appended to the subject (see `nats_subject`)."""
        await transaction.execute(
            self._insert,
            event_id=event.id,
            subject=nats_subject(event.type, route),
            payload=event.to_json().decode(),
            created_at=event.time,
        )
