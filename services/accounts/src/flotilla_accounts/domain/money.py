"""Money is an integer number of minor units (cents) and an ISO 4217 currency; never a float."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CURRENCIES", "MAX_AMOUNT_MINOR", "Money", "UnknownCurrency"]

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


class UnknownCurrency(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(f"unknown currency {code!r}; known: {', '.join(sorted(CURRENCIES))}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if self.currency not in CURRENCIES:
            raise UnknownCurrency(self.currency)
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise TypeError("amount_minor must be an int")
        if abs(self.amount_minor) > MAX_AMOUNT_MINOR:
            raise ValueError("amount out of range")

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)
