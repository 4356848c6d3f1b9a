"""The VAT split of gross prices: net + VAT = gross on every line and in the totals, the
gross total is the order's total to the cent, and the VAT is the exact share rounded half
up (hypothesis: over every amount and rate)."""

from __future__ import annotations

import datetime as dt
import uuid
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flotilla_billing.domain import (
    ConfirmedOrder,
    OrderLine,
    VatRates,
    invoice_for,
    split_gross,
)
from flotilla_kit.money import MAX_AMOUNT_MINOR

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("gross", "rate", "net", "vat"),
    [
        (1200, 2000, 1000, 200),  # 20 %: exact
        (100, 2000, 83, 17),  # 16.67 -> 17
        (1, 2000, 1, 0),  # 0.1667 -> 0
        (3, 2000, 2, 1),  # 0.5 exactly -> half up
        (105, 500, 100, 5),  # 5 %
        (999, 0, 999, 0),  # no VAT
        (0, 2000, 0, 0),
        (-100, 2000, -83, -17),  # a credit mirrors its debit
    ],
)
def test_split_examples(gross: int, rate: int, net: int, vat: int) -> None:
    assert split_gross(gross, rate) == (net, vat)


def test_a_rate_outside_0_to_100_percent_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        split_gross(100, 10_001)
    with pytest.raises(ValueError, match="outside"):
        VatRates(default_bp=-1)
    with pytest.raises(ValueError, match="book"):
        VatRates(default_bp=2000, overrides={"book": 20_000})


@given(
    gross=st.integers(min_value=-MAX_AMOUNT_MINOR, max_value=MAX_AMOUNT_MINOR),
    rate=st.integers(min_value=0, max_value=10_000),
)
def test_every_split_adds_up_and_rounds_half_up(gross: int, rate: int) -> None:
    net, vat = split_gross(gross, rate)
    assert net + vat == gross
    exact = Fraction(abs(gross) * rate, 10_000 + rate)
    assert abs(vat) - exact <= Fraction(1, 2)  # never more than half a cent off
    assert exact - abs(vat) < Fraction(1, 2)  # and a half goes up
    assert (vat >= 0) == (gross >= 0) or vat == 0


_lines = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=10_000),  # quantity
        st.integers(min_value=0, max_value=10_000_000),  # unit price
        st.integers(min_value=0, max_value=10_000),  # rate
    ),
    min_size=1,
    max_size=30,
)


@given(lines=_lines, default=st.integers(min_value=0, max_value=10_000))
def test_an_invoice_adds_up_on_every_line_and_in_its_totals(
    lines: list[tuple[int, int, int]], default: int
) -> None:
    order_lines = tuple(OrderLine(f"p{i}", q, p) for i, (q, p, _) in enumerate(lines))
    total = sum(q * p for q, p, _ in lines)
    rates = VatRates(
        default_bp=default, overrides={f"p{i}": r for i, (_, _, r) in enumerate(lines) if i % 2}
    )
    order = ConfirmedOrder("o-1", "alice", "EUR", total, order_lines, "t-1")
    if total == 0:
        return  # an order costs something (the payload refuses 0)
    invoice = invoice_for(order, rates=rates, id=uuid.uuid4(), number="2026-000001", issued_at=NOW)
    for line, (quantity, price, _) in zip(invoice.lines, lines, strict=True):
        assert line.net_minor + line.vat_minor == line.amount_minor == quantity * price
        assert line.vat_rate_bp == rates.rate_of(line.product_id)
    assert invoice.total_minor == total  # what was paid, to the cent
    assert invoice.net_minor + invoice.vat_minor == invoice.total_minor
    assert invoice.net_minor == sum(line.net_minor for line in invoice.lines)
    assert invoice.vat_minor == sum(line.vat_minor for line in invoice.lines)
