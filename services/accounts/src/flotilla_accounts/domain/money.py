"""Money is an integer number of minor units (cents) and an ISO 4217 currency; never a float
(the currencies: `flotilla_kit.money`)."""

from __future__ import annotations

from dataclasses import dataclass

from flotilla_kit.money import CURRENCIES, MAX_AMOUNT_MINOR

__all__ = ["CURRENCIES", "MAX_AMOUNT_MINOR", "Money", "UnknownCurrency"]


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
