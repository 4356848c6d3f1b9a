"""Products and their stock.

`on_hand` is what the shop has; `held` is the part of it promised to reservations not
decided yet; `available = on_hand - held` is what a new reservation may take. None of the
three can go negative: the database says so with CHECK constraints, whatever code writes
and however many transactions race. `version` grows by one with every change of a
product's stock, so that a consumer of stock events keeps the newest.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from dataclasses import dataclass
from typing import Any

from flotilla_inventory.domain.money import CURRENCIES, MAX_PRICE_MINOR

__all__ = [
    "MAX_ON_HAND",
    "MAX_REASON_LENGTH",
    "NAME_LENGTH",
    "Product",
    "StockLevel",
    "StockReason",
    "new_product_id",
    "product_problem",
    "valid_product_id",
    "valid_sku",
]

# Far more than any shelf holds, far below 2**63.
MAX_ON_HAND = 10**9
NAME_LENGTH = 200
MAX_REASON_LENGTH = 140

_SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PRODUCT_ID = re.compile(r"prd_[0-9a-f]{32}")


class StockReason(enum.StrEnum):
    """Why a product's stock changed (the `reason` of a stock event)."""

    CREATED = "created"
    ADJUSTED = "adjusted"
    RESERVED = "reserved"
    RELEASED = "released"
    COMMITTED = "committed"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    sku: str
    name: str
    price_minor: int
    currency: str
    on_hand: int
    held: int
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def available(self) -> int:
        return self.on_hand - self.held

    @property
    def stock(self) -> StockLevel:
        return StockLevel(self.id, self.sku, self.on_hand, self.held, self.version)


@dataclass(frozen=True, slots=True)
class StockLevel:
    """A product's stock right after a change: what a stock event says."""

    product_id: str
    sku: str
    on_hand: int
    held: int
    version: int

    @property
    def available(self) -> int:
        return self.on_hand - self.held

    def event_data(self, reason: StockReason) -> dict[str, Any]:
        """The `data` of `flotilla.inventory.stock_changed`."""
        return {
            "product_id": self.product_id,
            "sku": self.sku,
            "on_hand": self.on_hand,
            "reserved": self.held,
            "available": self.available,
            "version": self.version,
            "reason": reason.value,
        }


def new_product_id() -> str:
    return f"prd_{uuid.uuid4().hex}"


def valid_product_id(product_id: str) -> bool:
    """Whether `product_id` could name a product (ids this service hands out)."""
    return _PRODUCT_ID.fullmatch(product_id) is not None


def valid_sku(sku: str) -> bool:
    return _SKU.fullmatch(sku) is not None


def product_problem(
    *, sku: str, name: str, price_minor: int, currency: str, on_hand: int
) -> str | None:
    """What is wrong with a new product, or None. Also checked by the database."""
    if not valid_sku(sku):
        return "sku must be 1 to 64 letters, digits or . _ - (starting with a letter or digit)"
    if not name.strip() or len(name) > NAME_LENGTH:
        return f"name must be 1 to {NAME_LENGTH} characters"
    if not 0 < price_minor <= MAX_PRICE_MINOR:
        return f"price_minor must be between 1 and {MAX_PRICE_MINOR}"
    if currency not in CURRENCIES:
        return f"unknown currency {currency!r}; use one of {', '.join(sorted(CURRENCIES))}"
    if not 0 <= on_hand <= MAX_ON_HAND:
        return f"on_hand must be between 0 and {MAX_ON_HAND}"
    return None
