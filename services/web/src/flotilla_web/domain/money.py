"""Amounts as people type and read them, and as the APIs carry them: integer minor
units with a currency (`flotilla_kit.money`), never a float."""

from __future__ import annotations

import re

from flotilla_kit.money import CURRENCIES, MAX_AMOUNT_MINOR

__all__ = ["InvalidAmount", "format_amount", "parse_amount"]

# Digits, then at most one decimal separator (a point or a comma) and its decimals;
# spaces between groups of thousands are allowed and dropped ("1 250.50").
_AMOUNT = re.compile(r"(?P<units>[0-9]{1,16})(?:[.,](?P<decimals>[0-9]+))?")


class InvalidAmount(ValueError):
    """The text is not an amount this currency can carry; the message says why."""


def _exponent(currency: str) -> int:
    return CURRENCIES.get(currency, 2)


def parse_amount(text: str, currency: str) -> int:
    """`"12.50"` EUR -> 1250: a positive amount, in minor units, or InvalidAmount."""
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "")
    if not cleaned:
        raise InvalidAmount("Enter an amount.")
    found = _AMOUNT.fullmatch(cleaned)
    if found is None:
        raise InvalidAmount("Enter an amount as digits, like 12.50.")
    exponent = _exponent(currency)
    units: str = found.group("units")
    decimals: str = found.group("decimals") or ""
    if len(decimals) > exponent:
        raise InvalidAmount(
            f"{currency} has no decimals." if exponent == 0 else f"At most {exponent} decimals."
        )
    minor: int = int(units) * 10**exponent + int(decimals.ljust(exponent, "0") or "0")
    if minor <= 0:
        raise InvalidAmount("The amount must be more than zero.")
    if minor > MAX_AMOUNT_MINOR:
        raise InvalidAmount("The amount is too large.")
    return minor


def format_amount(minor: int, currency: str) -> str:
    """1234550, "EUR" -> "12,345.50 EUR"; -5, "EUR" -> "-0.05 EUR"."""
    exponent = _exponent(currency)
    sign = "-" if minor < 0 else ""
    units, decimals = divmod(abs(minor), 10**exponent)
    text = f"{units:,}" + (f".{decimals:0{exponent}d}" if exponent else "")
    return f"{sign}{text} {currency}"
