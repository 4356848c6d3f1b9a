"""Prices are an integer number of minor units (cents) and an ISO 4217 currency; never a
float."""

from __future__ import annotations

from flotilla_kit.money import CURRENCIES

__all__ = ["CURRENCIES", "MAX_PRICE_MINOR"]

# Far below 2**63: a line's total (price x at most 10 000 units) still fits a BIGINT, and so
# does an order of 100 such lines.
MAX_PRICE_MINOR = 10**12
