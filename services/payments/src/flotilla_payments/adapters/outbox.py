"""The events the coordinator publishes, written to the outbox in its transaction as
CloudEvents (`flotilla.payments.<event>`)."""

from __future__ import annotations

from typing import Any

from flotilla_kit.db import Transaction
from flotilla_kit.events import CloudEvent, Outbox
from flotilla_payments.adapters.tables import outbox
from flotilla_payments.domain.events import SERVICE

__all__ = ["SqlEventOutbox"]

_OUTBOX = Outbox(outbox)


class SqlEventOutbox:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def add(
        self, event: str, *, subject: str, data: dict[str, Any], route: str | None = None
    ) -> None:
        envelope = CloudEvent.new(SERVICE, event, data, subject=subject)
        await _OUTBOX.add(self.transaction, envelope, route=route)
