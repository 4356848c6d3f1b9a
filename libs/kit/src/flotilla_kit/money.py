"""The currencies Flotilla handles, with their minor-unit exponent (ISO 4217), and the
largest amount it stores. Money is always an integer number of minor units (cents) and a
currency code; never a float.

One table for every service (the bank keeps accounts in these currencies, payments
screens transfers with it, the shop prices in it), so they cannot drift apart. Pure: a
domain may import it.
"""

from __future__ import annotations

__all__ = ["CURRENCIES", "MAX_AMOUNT_MINOR"]

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

# Far below 2**63 so that any sum of a few amounts still fits a BIGINT.
MAX_AMOUNT_MINOR = 10**15
