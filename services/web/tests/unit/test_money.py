"""Amounts as people type them -> minor units, and back."""

from __future__ import annotations

import pytest

from flotilla_web.domain import InvalidAmount, format_amount, parse_amount


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.50", "EUR", 1250),
        ("12,50", "EUR", 1250),
        ("12.5", "EUR", 1250),
        ("12", "EUR", 1200),
        (" 0.01 ", "EUR", 1),
        ("1 250.00", "EUR", 125_000),
        ("1250", "JPY", 1250),
        ("10000000000000.00", "EUR", 10**15),
    ],
)
def test_an_amount_is_read_in_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "says"),
    [
        ("", "EUR", "Enter an amount."),
        ("   ", "EUR", "Enter an amount."),
        ("abc", "EUR", "like 12.50"),
        ("-5", "EUR", "like 12.50"),
        ("+5", "EUR", "like 12.50"),
        ("1e5", "EUR", "like 12.50"),
        ("1,250.00", "EUR", "like 12.50"),
        ("12.", "EUR", "like 12.50"),
        (".5", "EUR", "like 12.50"),
        ("0x10", "EUR", "like 12.50"),
        ("\u0661\u0662", "EUR", "like 12.50"),  # Arabic-Indic digits: not ours
        ("NaN", "EUR", "like 12.50"),
        ("12.345", "EUR", "At most 2 decimals."),
        ("12.5", "JPY", "JPY has no decimals."),
        ("0", "EUR", "more than zero"),
        ("0.00", "EUR", "more than zero"),
        ("10000000000000.01", "EUR", "too large"),
        ("9" * 17, "EUR", "like 12.50"),
    ],
)
def test_what_is_no_amount_is_refused_with_a_reason(text: str, currency: str, says: str) -> None:
    with pytest.raises(InvalidAmount, match=says.replace(".", r"\.")):
        parse_amount(text, currency)


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (1250, "EUR", "12.50 EUR"),
        (5, "EUR", "0.05 EUR"),
        (-5, "EUR", "-0.05 EUR"),
        (123_456_789, "USD", "1,234,567.89 USD"),
        (1250, "JPY", "1,250 JPY"),
        (0, "GBP", "0.00 GBP"),
    ],
)
def test_an_amount_is_shown_with_its_currency(minor: int, currency: str, shown: str) -> None:
    assert format_amount(minor, currency) == shown
