"""The saga's final events, written in the transaction of the final state.

Placeholder until `flotilla_kit.events` (the transactional outbox) lands on main: the
events are logged, not stored. The port (`EventLog.add`) is what the saga calls either way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_kit.logs import get_logger

__all__ = ["SqlEventLog"]

_log = get_logger("flotilla.orders.events")


class SqlEventLog:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, event: str, *, subject: str, data: dict[str, Any]) -> None:
        _log.info("event (no outbox yet)", event_type=event, subject=subject)
