"""The events the coordinator publishes, written to the outbox in its transaction."""

from __future__ import annotations

from flotilla_kit.db import Transaction
from flotilla_kit.events import CloudEvent, Outbox
from flotilla_payments.adapters.tables import outbox

__all__ = ["SqlEventOutbox"]

_OUTBOX = Outbox(outbox)


class SqlEventOutbox:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def add(self, event: CloudEvent, *, route: str | None = None) -> None:
        await _OUTBOX.add(self.transaction, event, route=route)
