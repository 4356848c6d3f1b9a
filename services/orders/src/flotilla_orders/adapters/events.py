"""The saga's final events, into the transactional outbox (`flotilla_kit.events`): written
in the transaction of the final state, published later by `python -m flotilla_orders
relay`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_kit.events import CloudEvent, Outbox
from flotilla_orders.adapters.tables import outbox
from flotilla_orders.domain import SERVICE

__all__ = ["OUTBOX", "SqlEventLog"]

OUTBOX = Outbox(outbox)


class SqlEventLog:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, event: str, *, subject: str, data: dict[str, Any]) -> None:
        await OUTBOX.add(self.session, CloudEvent.new(SERVICE, event, data, subject=subject))
