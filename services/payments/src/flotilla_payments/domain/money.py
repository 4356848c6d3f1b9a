"""Money is an integer number of minor units (cents) and an ISO 4217 currency; never a float.

The list of currencies is a copy of the ledger's (`flotilla_accounts.domain.money`): a
service never imports another service's package. Payments only screens requests with it;
the ledger shard, which holds the accounts, has the last word.
"""

from __future__ import annotations

__all__ = ["CURRENCIES", "MAX_AMOUNT_MINOR"]

# The currencies the bank keeps accounts in, with their minor-unit exponent (ISO 4217).
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
