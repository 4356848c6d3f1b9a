"""Stock events (`flotilla.inventory.stock_changed`), written in the transaction of the
change they describe.

The kit's transactional outbox (`flotilla_kit.events`) is not on main yet: until it is,
the events are only counted here, and nothing is published. The use cases already emit
every event; wiring the outbox replaces this class and adds the `outbox` table.
"""

from __future__ import annotations

from flotilla_inventory.domain import StockLevel, StockReason

__all__ = ["UnpublishedStockEvents"]


class UnpublishedStockEvents:
    def __init__(self) -> None:
        self.count = 0

    async def changed(self, level: StockLevel, reason: StockReason) -> None:
        self.count += 1
