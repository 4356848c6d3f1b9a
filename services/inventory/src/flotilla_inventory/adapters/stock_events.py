"""Stock events (`flotilla.inventory.stock_changed`, subject: the product id), written to
the outbox in the transaction of the change they describe: the event commits with the
change, or neither does. The relay (`python -m flotilla_inventory relay`) publishes them.
"""

from __future__ import annotations

from flotilla_inventory.adapters.tables import outbox
from flotilla_inventory.domain import StockLevel, StockReason
from flotilla_kit.db import Transaction
from flotilla_kit.events import CloudEvent, Outbox

__all__ = ["OUTBOX", "SERVICE", "STOCK_CHANGED", "OutboxStockEvents"]

SERVICE = "inventory"
STOCK_CHANGED = "stock_changed"
OUTBOX = Outbox(outbox)


class OutboxStockEvents:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def changed(self, level: StockLevel, reason: StockReason) -> None:
        event = CloudEvent.new(
            SERVICE, STOCK_CHANGED, level.event_data(reason), subject=level.product_id
        )
        await OUTBOX.add(self.transaction, event)
