"""Prices are an integer number of minor units (cents) and an ISO 4217 currency; never a
float."""

from __future__ import annotations

__all__ = ["CURRENCIES", "MAX_PRICE_MINOR"]

# The currencies the shop sells in (ISO 4217), with their minor-unit exponent.
CURRENCIES: dict[str, int] = {
    "EUR": 2,
    "USD": 2,
    "GBP": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "CAD": 2,
    "AUD": 2,
    "JPY": 0,
}

# Far below 2**63: a line's total (price x at most 10 000 units) still fits a BIGINT, and so
# does an order of 100 such lines.
MAX_PRICE_MINOR = 10**12
