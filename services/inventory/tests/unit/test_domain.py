"""The pure rules: what makes a Reserve malformed, fingerprints, tombstones, expiry, and
what a stock event says."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from flotilla_inventory.domain import (
    MAX_LINES,
    MAX_QUANTITY,
    Product,
    Refusal,
    RequestedLine,
    Reservation,
    ReservationState,
    StockLevel,
    StockReason,
    answer_to_reserve,
    hold_problem,
    lines_fingerprint,
    lines_problem,
    new_product_id,
    product_problem,
    reservation_id_problem,
    valid_product_id,
)

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
A, B = "prd_" + "a" * 32, "prd_" + "b" * 32


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ([], "1 to 100 lines"),
        ([RequestedLine(f"p{i}", 1) for i in range(MAX_LINES + 1)], "1 to 100 lines"),
        ([RequestedLine(A, 0)], "quantity must be between 1 and 10000"),
        ([RequestedLine(A, -3)], "quantity must be between 1 and 10000"),
        ([RequestedLine(A, MAX_QUANTITY + 1)], "quantity must be between 1 and 10000"),
        ([RequestedLine(A, True)], "quantity must be between 1 and 10000"),
        ([RequestedLine(A, 1), RequestedLine(A, 2)], "appears in more than one line"),
        ([RequestedLine("", 1)], "product_id must be 1 to 64"),
        ([RequestedLine("x" * 65, 1)], "product_id must be 1 to 64"),
    ],
)
def test_malformed_lines_say_what_is_wrong(lines: list[RequestedLine], problem: str) -> None:
    found = lines_problem(lines)
    assert found is not None
    assert problem in found


def test_well_formed_lines_have_no_problem() -> None:
    assert lines_problem([RequestedLine(A, 1), RequestedLine(B, MAX_QUANTITY)]) is None
    assert lines_problem([RequestedLine(f"p{i}", 1) for i in range(MAX_LINES)]) is None
    # A product id that names no product is not malformed: the catalogue decides that.
    assert lines_problem([RequestedLine("no-such-product", 1)]) is None


@pytest.mark.parametrize(
    ("reservation_id", "ok"),
    [
        ("ord_1", True),
        ("a", True),
        ("A.b:c-d_9", True),
        ("x" * 64, True),
        ("", False),
        ("x" * 65, False),
        ("-leading", False),
        ("with space", False),
        ("slash/es", False),
        ("ünïcode", False),
    ],
)
def test_reservation_ids(reservation_id: str, ok: bool) -> None:
    assert (reservation_id_problem(reservation_id) is None) is ok


def test_hold_is_zero_for_the_default_or_up_to_the_maximum() -> None:
    assert hold_problem(0, 600) is None
    assert hold_problem(600, 600) is None
    assert hold_problem(601, 600) is not None
    assert hold_problem(-1, 600) is not None


def test_fingerprint_ignores_the_order_of_lines_but_not_quantities() -> None:
    one = lines_fingerprint([RequestedLine(A, 1), RequestedLine(B, 2)])
    assert one == lines_fingerprint([RequestedLine(B, 2), RequestedLine(A, 1)])
    assert one != lines_fingerprint([RequestedLine(A, 2), RequestedLine(B, 1)])
    assert one != lines_fingerprint([RequestedLine(A, 1)])


def _held(expires_in_s: float = 60) -> Reservation:
    return Reservation(
        id="r1",
        state=ReservationState.HELD,
        created_at=NOW,
        expires_at=NOW + dt.timedelta(seconds=expires_in_s),
        fingerprint=lines_fingerprint([RequestedLine(A, 1)]),
    )


def test_a_hold_is_overdue_from_its_deadline_on() -> None:
    held = _held(60)
    assert not held.overdue(NOW + dt.timedelta(seconds=59))
    assert held.overdue(NOW + dt.timedelta(seconds=60))
    assert held.overdue(NOW + dt.timedelta(days=1))
    committed = replace(held, state=ReservationState.COMMITTED, decided_at=NOW)
    assert not committed.overdue(NOW + dt.timedelta(days=1))


def test_a_repeated_reserve_gets_the_reservation_as_it_is() -> None:
    held = _held()
    assert answer_to_reserve(held, held.fingerprint or "", now=NOW) is held


def test_a_reserve_under_an_id_used_for_other_lines_is_refused_as_invalid() -> None:
    other = lines_fingerprint([RequestedLine(A, 2)])
    answer = answer_to_reserve(_held(), other, now=NOW)
    assert (answer.state, answer.refusal) == (ReservationState.REFUSED, Refusal.INVALID)
    assert "already used for other lines" in answer.detail


def test_a_tombstone_refuses_a_late_reserve() -> None:
    tombstone = Reservation(
        id="r1", state=ReservationState.RELEASED, created_at=NOW, decided_at=NOW
    )
    assert tombstone.is_tombstone
    answer = answer_to_reserve(tombstone, lines_fingerprint([RequestedLine(A, 1)]), now=NOW)
    assert (answer.state, answer.refusal) == (ReservationState.REFUSED, Refusal.ALREADY_RELEASED)
    assert answer.lines == ()


def test_a_released_hold_is_not_a_tombstone() -> None:
    released = Reservation(
        id="r1",
        state=ReservationState.RELEASED,
        created_at=NOW,
        fingerprint=lines_fingerprint([RequestedLine(A, 1)]),
    )
    assert not released.is_tombstone
    assert answer_to_reserve(released, released.fingerprint or "", now=NOW) is released


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"sku": ""}, "sku must be"),
        ({"sku": "has space"}, "sku must be"),
        ({"sku": "x" * 65}, "sku must be"),
        ({"name": "  "}, "name must be"),
        ({"name": "n" * 201}, "name must be"),
        ({"price_minor": 0}, "price_minor must be"),
        ({"price_minor": -5}, "price_minor must be"),
        ({"price_minor": 10**12 + 1}, "price_minor must be"),
        ({"currency": "XYZ"}, "unknown currency"),
        ({"currency": "eur"}, "unknown currency"),
        ({"on_hand": -1}, "on_hand must be"),
        ({"on_hand": 10**9 + 1}, "on_hand must be"),
    ],
)
def test_product_rules(change: dict[str, object], problem: str) -> None:
    fields: dict[str, object] = {
        "sku": "MUG-1", "name": "Mug", "price_minor": 1250, "currency": "EUR", "on_hand": 5,
    }  # fmt: skip
    assert product_problem(**fields) is None  # type: ignore[arg-type]
    found = product_problem(**{**fields, **change})  # type: ignore[arg-type]
    assert found is not None
    assert problem in found


def test_product_ids_are_recognisable() -> None:
    made = new_product_id()
    assert valid_product_id(made)
    assert made != new_product_id()
    assert not valid_product_id("prd_XYZ")


def test_a_stock_event_says_what_the_contract_says() -> None:
    level = StockLevel("prd_1", "MUG-1", on_hand=10, held=3, version=7)
    assert level.event_data(StockReason.RESERVED) == {
        "product_id": "prd_1",
        "sku": "MUG-1",
        "on_hand": 10,
        "reserved": 3,
        "available": 7,
        "version": 7,
        "reason": "reserved",
    }


def test_a_product_knows_what_is_available() -> None:
    product = Product(
        id="prd_1", sku="S", name="n", price_minor=1, currency="EUR", on_hand=10, held=4,
        version=3, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    assert product.available == 6
    assert product.stock == StockLevel("prd_1", "S", 10, 4, 3)
