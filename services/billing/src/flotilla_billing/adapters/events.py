"""Billing's events into the transactional outbox (`flotilla_kit.events`): written in the
document's transaction, published later by `python -m flotilla_billing relay`."""

from __future__ import annotations

from typing import Any

from flotilla_billing.adapters.tables import outbox
from flotilla_billing.domain import SERVICE
from flotilla_kit.db import Transaction
from flotilla_kit.events import CloudEvent, Outbox

__all__ = ["OUTBOX", "SqlEventLog"]

OUTBOX = Outbox(outbox)


class SqlEventLog:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def add(self, event: str, *, subject: str, data: dict[str, Any]) -> None:
        await OUTBOX.add(self.transaction, CloudEvent.new(SERVICE, event, data, subject=subject))
