"""The reservation desk's rules against in-memory fakes: every (state, call) pair of the
contract's state machine, all-or-none, the tombstone, expiry, and batches that answer
exactly as single calls do."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from flotilla_inventory.domain import (
    Refusal,
    RequestedLine,
    Reservation,
    ReservationState,
    StockReason,
)
from flotilla_inventory.service_layer.reservations import ReservationDesk, ReserveCall
from flotilla_kit.clock import ManualClock

from .fakes import START, FakeMetrics, FakeUowFactory, Store

A, B, C = "prd_a", "prd_b", "prd_c"
HELD, COMMITTED, RELEASED, EXPIRED, REFUSED = (
    ReservationState.HELD,
    ReservationState.COMMITTED,
    ReservationState.RELEASED,
    ReservationState.EXPIRED,
    ReservationState.REFUSED,
)


@dataclass
class Rig:
    store: Store
    clock: ManualClock
    metrics: FakeMetrics
    desk: ReservationDesk

    def stock(self, product_id: str) -> tuple[int, int]:
        product = self.store.products[product_id]
        return product.on_hand, product.held


def make_rig() -> Rig:
    store = Store()
    store.add_product(A, on_hand=10, price_minor=500)
    store.add_product(B, on_hand=3, price_minor=1200)
    store.add_product(C, on_hand=0)
    clock, metrics = ManualClock(START), FakeMetrics()
    desk = ReservationDesk(
        FakeUowFactory(store), default_hold_s=120, max_hold_s=600, metrics=metrics, clock=clock
    )
    return Rig(store, clock, metrics, desk)


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def call(reservation_id: str, *lines: tuple[str, int], hold_s: int = 0) -> ReserveCall:
    return ReserveCall(reservation_id, tuple(RequestedLine(p, q) for p, q in lines), hold_s)


# Reserve ------------------------------------------------------------------------------


async def test_reserve_holds_every_line_at_its_current_price(rig: Rig) -> None:
    answer = await rig.desk.reserve(call("r1", (B, 2), (A, 3)))
    assert answer.state is HELD
    assert [(line.product_id, line.quantity, line.unit_price_minor) for line in answer.lines] == [
        (A, 3, 500),
        (B, 2, 1200),
    ]
    assert (answer.expires_at - rig.clock.now).total_seconds() == 120  # type: ignore[operator]
    assert rig.stock(A) == (10, 3)
    assert rig.stock(B) == (3, 2)
    assert rig.store.reservations["r1"] == answer
    assert [(level.product_id, level.held, level.version, reason) for level, reason in
            rig.store.events] == [(A, 3, 2, StockReason.RESERVED), (B, 2, 2, StockReason.RESERVED)]  # fmt: skip
    assert rig.metrics.answers == [("reserve", "held")]


async def test_a_hold_lasts_as_long_as_asked(rig: Rig) -> None:
    answer = await rig.desk.reserve(call("r1", (A, 1), hold_s=30))
    assert (answer.expires_at - rig.clock.now).total_seconds() == 30  # type: ignore[operator]


async def test_all_or_none_a_short_line_holds_nothing(rig: Rig) -> None:
    before = rig.store.state()
    answer = await rig.desk.reserve(call("r1", (A, 2), (B, 4)))
    assert (answer.state, answer.refusal) == (REFUSED, Refusal.OUT_OF_STOCK)
    assert answer.short_products == (B,)
    assert answer.lines == ()
    assert rig.stock(A) == (10, 0)
    assert rig.stock(B) == (3, 0)
    # The refusal is kept (nothing else changed): it depends on the stock.
    after = rig.store.state()
    assert (after[0], after[2], after[3]) == (before[0], before[2], before[3])
    assert rig.store.reservations["r1"].refusal is Refusal.OUT_OF_STOCK


async def test_every_short_line_is_named(rig: Rig) -> None:
    answer = await rig.desk.reserve(call("r1", (A, 11), (B, 3), (C, 1)))
    assert answer.refusal is Refusal.OUT_OF_STOCK
    assert answer.short_products == (A, C)


async def test_an_unknown_product_holds_nothing(rig: Rig) -> None:
    answer = await rig.desk.reserve(call("r1", (A, 1), ("prd_nope", 1)))
    assert (answer.state, answer.refusal) == (REFUSED, Refusal.UNKNOWN_PRODUCT)
    assert answer.short_products == ("prd_nope",)
    assert rig.stock(A) == (10, 0)
    assert rig.store.events == []


async def test_a_refusal_is_repeated_even_after_a_restock(rig: Rig) -> None:
    first = await rig.desk.reserve(call("r1", (C, 1)))
    rig.store.add_product(C, on_hand=50)
    again = await rig.desk.reserve(call("r1", (C, 1)))
    assert again == first
    assert rig.stock(C) == (50, 0)


@pytest.mark.parametrize(
    ("request_", "detail"),
    [
        (call("r1"), "1 to 100 lines"),
        (call("r1", (A, 0)), "quantity"),
        (call("r1", (A, -1)), "quantity"),
        (call("r1", (A, 10_001)), "quantity"),
        (call("r1", (A, 1), (A, 2)), "more than one line"),
        (call("r1", *[(f"prd_{i}", 1) for i in range(101)]), "1 to 100 lines"),
        (call("", (A, 1)), "reservation_id"),
        (call("x" * 65, (A, 1)), "reservation_id"),
        (call("r1", (A, 1), hold_s=601), "hold_s"),
        (call("r1", (A, 1), hold_s=-1), "hold_s"),
    ],
)
async def test_a_malformed_reserve_is_refused_as_invalid_and_writes_nothing(
    rig: Rig, request_: ReserveCall, detail: str
) -> None:
    before = rig.store.state()
    answer = await rig.desk.reserve(request_)
    assert (answer.state, answer.refusal) == (REFUSED, Refusal.INVALID)
    assert detail in answer.detail
    assert rig.store.state() == before
    assert rig.metrics.answers == [("reserve", "invalid")]


async def test_a_repeated_reserve_holds_once(rig: Rig) -> None:
    first = await rig.desk.reserve(call("r1", (A, 4)))
    again = await rig.desk.reserve(call("r1", (A, 4)))
    assert again == first
    assert rig.stock(A) == (10, 4)
    assert len(rig.store.events) == 1


async def test_a_repeat_still_holds_once_when_nothing_is_left(rig: Rig) -> None:
    first = await rig.desk.reserve(call("r1", (B, 3)))
    again = await rig.desk.reserve(call("r1", (B, 3)))
    assert again == first
    assert again.state is HELD
    assert rig.stock(B) == (3, 3)


async def test_other_lines_under_a_known_id_are_refused_and_change_nothing(rig: Rig) -> None:
    await rig.desk.reserve(call("r1", (A, 4)))
    before = rig.store.state()
    answer = await rig.desk.reserve(call("r1", (A, 5)))
    assert (answer.state, answer.refusal) == (REFUSED, Refusal.INVALID)
    assert rig.store.state() == before
    assert rig.store.reservations["r1"].state is HELD


async def test_the_price_is_fixed_when_the_stock_is_held(rig: Rig) -> None:
    held = await rig.desk.reserve(call("r1", (A, 1)))
    rig.store.add_product(A, on_hand=10, held=1, price_minor=999)
    later = await rig.desk.reserve(call("r2", (A, 1)))
    assert held.lines[0].unit_price_minor == 500
    assert later.lines[0].unit_price_minor == 999
    committed = await rig.desk.commit("r1")
    assert committed is not None
    assert committed.lines[0].unit_price_minor == 500


# Commit and Release ---------------------------------------------------------------------


async def test_commit_sells_the_held_stock_once(rig: Rig) -> None:
    await rig.desk.reserve(call("r1", (A, 4), (B, 1)))
    committed = await rig.desk.commit("r1")
    assert committed is not None
    assert committed.state is COMMITTED
    assert committed.decided_at == rig.clock.now
    assert rig.stock(A) == (6, 0)
    assert rig.stock(B) == (2, 0)
    again = await rig.desk.commit("r1")
    assert again == committed
    assert rig.stock(A) == (6, 0)
    reasons = [reason for _, reason in rig.store.events]
    assert reasons.count(StockReason.COMMITTED) == 2


async def test_commit_of_no_reservation_answers_none_and_writes_nothing(rig: Rig) -> None:
    before = rig.store.state()
    assert await rig.desk.commit("never") is None
    assert await rig.desk.commit("not a valid id!") is None
    assert rig.store.state() == before
    assert rig.metrics.answers == [("commit", "unknown"), ("commit", "unknown")]


async def test_release_gives_the_stock_back_once(rig: Rig) -> None:
    await rig.desk.reserve(call("r1", (A, 4)))
    released = await rig.desk.release("r1")
    assert released.state is RELEASED
    assert released.lines[0].quantity == 4
    assert rig.stock(A) == (10, 0)
    again = await rig.desk.release("r1")
    assert again == released
    assert rig.stock(A) == (10, 0)
    assert [reason for _, reason in rig.store.events] == [
        StockReason.RESERVED,
        StockReason.RELEASED,
    ]


async def test_release_before_reserve_leaves_a_tombstone_that_refuses_the_reserve(
    rig: Rig,
) -> None:
    tombstone = await rig.desk.release("r1")
    assert tombstone.state is RELEASED
    assert tombstone.lines == ()
    assert tombstone.is_tombstone
    late = await rig.desk.reserve(call("r1", (A, 1)))
    assert (late.state, late.refusal) == (REFUSED, Refusal.ALREADY_RELEASED)
    assert rig.stock(A) == (10, 0)
    assert rig.store.reservations["r1"].is_tombstone
    assert await rig.desk.release("r1") == tombstone
    assert await rig.desk.commit("r1") == tombstone


async def test_a_malformed_release_is_refused_and_leaves_no_tombstone(rig: Rig) -> None:
    answer = await rig.desk.release("bad id")
    assert (answer.state, answer.refusal) == (REFUSED, Refusal.INVALID)
    assert rig.store.reservations == {}


@pytest.mark.parametrize(
    ("setup", "state"),
    [
        ("commit", COMMITTED),
        ("release", RELEASED),
        ("expire", EXPIRED),
        ("refuse", REFUSED),
    ],
)
async def test_a_decided_reservation_answers_as_it_is(rig: Rig, setup: str, state: str) -> None:
    if setup == "refuse":
        await rig.desk.reserve(call("r1", (C, 1)))
    else:
        await rig.desk.reserve(call("r1", (A, 2)))
    if setup == "commit":
        await rig.desk.commit("r1")
    elif setup == "release":
        await rig.desk.release("r1")
    elif setup == "expire":
        rig.clock.advance(121)
        assert await rig.desk.expire_overdue(limit=10) == 1
    before = rig.store.state()
    for answer in (
        await rig.desk.reserve(call("r1", (A, 2) if setup != "refuse" else (C, 1))),
        await rig.desk.commit("r1"),
        await rig.desk.release("r1"),
        await rig.desk.get("r1"),
    ):
        assert answer is not None
        assert answer.state is state
    assert rig.store.state() == before


# Expiry ---------------------------------------------------------------------------------


async def test_the_sweep_expires_only_holds_past_their_deadline(rig: Rig) -> None:
    await rig.desk.reserve(call("short", (A, 2), hold_s=10))
    await rig.desk.reserve(call("long", (A, 3), hold_s=100))
    rig.clock.advance(10)
    assert await rig.desk.expire_overdue(limit=10) == 1
    assert rig.store.reservations["short"].state is EXPIRED
    assert rig.store.reservations["long"].state is HELD
    assert rig.stock(A) == (10, 3)
    assert rig.metrics.expirations == 1
    assert rig.store.events[-1][1] is StockReason.EXPIRED
    assert await rig.desk.expire_overdue(limit=10) == 0


async def test_a_sweep_takes_at_most_its_batch(rig: Rig) -> None:
    for i in range(5):
        await rig.desk.reserve(call(f"r{i}", (A, 1), hold_s=10))
    rig.clock.advance(11)
    assert await rig.desk.expire_overdue(limit=2) == 2
    assert await rig.desk.expire_overdue(limit=10) == 3
    assert rig.stock(A) == (10, 0)


@pytest.mark.parametrize("operation", ["reserve", "commit", "release", "get"])
async def test_a_hold_past_its_deadline_is_expired_by_whoever_looks_first(
    rig: Rig, operation: str
) -> None:
    await rig.desk.reserve(call("r1", (A, 2), hold_s=10))
    rig.clock.advance(10)
    if operation == "reserve":
        answer: Reservation | None = await rig.desk.reserve(call("r1", (A, 2)))
    elif operation == "commit":
        answer = await rig.desk.commit("r1")
    elif operation == "release":
        answer = await rig.desk.release("r1")
    else:
        answer = await rig.desk.get("r1")
    assert answer is not None
    assert answer.state is EXPIRED
    assert rig.stock(A) == (10, 0)
    assert await rig.desk.expire_overdue(limit=10) == 0


# Reads ----------------------------------------------------------------------------------


async def test_availability_in_the_order_asked(rig: Rig) -> None:
    await rig.desk.reserve(call("r1", (A, 4)))
    found = await rig.desk.availability([B, "prd_nope", A, B])
    assert [(f.product_id, f.product.available if f.product else None) for f in found] == [
        (B, 3),
        ("prd_nope", None),
        (A, 6),
        (B, 3),
    ]


# Batches --------------------------------------------------------------------------------

BATCH = [
    call("b1", (A, 2)),
    call("b2", (A, 3), (B, 1)),
    call("b1", (A, 2)),  # a repeat within the batch
    call("b3", (A, 0)),  # malformed
    call("b4", ("prd_nope", 1)),  # unknown product
    call("known", (A, 1)),  # reserved before the batch
    call("b5", (B, 2)),
    call("tomb", (A, 1)),  # released before the batch
]


async def _prepare(rig: Rig) -> None:
    await rig.desk.reserve(call("known", (A, 1)))
    await rig.desk.release("tomb")


@pytest.mark.parametrize("batch", [BATCH, BATCH[:2], [call("b9", (B, 3)), call("b10", (B, 1))]])
async def test_a_batch_answers_exactly_as_calls_one_by_one(batch: list[ReserveCall]) -> None:
    one_by_one, together = make_rig(), make_rig()
    await _prepare(one_by_one)
    await _prepare(together)
    singles = [await one_by_one.desk.reserve(c) for c in batch]
    answers = await together.desk.reserve_batch(batch)
    assert answers == singles
    assert together.store.reservations == one_by_one.store.reservations
    assert {k: (p.on_hand, p.held) for k, p in together.store.products.items()} == {
        k: (p.on_hand, p.held) for k, p in one_by_one.store.products.items()
    }
    assert sorted(together.metrics.answers) == sorted(one_by_one.metrics.answers)


async def test_a_batch_that_fits_is_one_hold_per_product(rig: Rig) -> None:
    commits = rig.store.commits
    answers = await rig.desk.reserve_batch([call(f"r{i}", (A, 1)) for i in range(5)])
    assert all(a.state is HELD for a in answers)
    assert rig.stock(A) == (10, 5)
    assert rig.store.commits == commits + 1
    # One change of the product's stock: one event, one version step.
    assert [(level.held, level.version) for level, _ in rig.store.events] == [(5, 2)]


async def test_a_batch_that_does_not_fit_falls_back_to_one_by_one(rig: Rig) -> None:
    answers = await rig.desk.reserve_batch([call(f"r{i}", (B, 1)) for i in range(5)])
    assert [a.state for a in answers] == [HELD, HELD, HELD, REFUSED, REFUSED]
    assert rig.stock(B) == (3, 3)
    assert all(a.refusal is Refusal.OUT_OF_STOCK for a in answers[3:])
