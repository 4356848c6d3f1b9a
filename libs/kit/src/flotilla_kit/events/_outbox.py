"""Writing events: one INSERT in the caller's transaction."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_kit.events._cloudevent import CloudEvent

__all__ = ["Outbox"]


class Outbox:
    """The event commits with the change it describes, or not at all: nothing is sent
    from inside a transaction that may still roll back (the relay sends it later)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    async def add(self, session: AsyncSession, event: CloudEvent) -> None:
        await session.execute(
            self.table.insert().values(
                event_id=event.id,
                subject=event.type,
                payload=event.to_json().decode(),
                created_at=event.time,
            )
        )
