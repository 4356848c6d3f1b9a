"""The order history from events: each event stores what it says, so any order of
arrival and any number of copies give the same history; and who may read it."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Awaitable, Callable

import pytest

from flotilla_kit.testing import principal as who
from flotilla_orders.domain import InvalidEventData, PaymentState
from flotilla_orders.service_layer import history
from flotilla_orders.service_layer.errors import InvalidCursor, NotAllowed
from services.orders.tests.fakes import T0, FakeStore, FakeUowFactory

Apply = Callable[[], Awaitable[object]]


def confirmed(order_id: str, transfer_id: str, *, customer: str = "alice") -> dict[str, object]:
    return {
        "order_id": order_id, "customer_id": customer,
        "lines": [{"product_id": "apple", "quantity": 2, "unit_price_minor": 150}],
        "total_minor": 300, "currency": "EUR", "payment_transfer_id": transfer_id,
    }  # fmt: skip


def cancelled(order_id: str, reason: str, refund: str | None = None) -> dict[str, object]:
    return {
        "order_id": order_id, "customer_id": "alice", "reason": reason,
        "refund_transfer_id": refund,
    }  # fmt: skip


def refunded(order_id: str, transfer_id: str) -> dict[str, object]:
    return {
        "order_id": order_id, "customer_id": "alice", "refund_transfer_id": transfer_id,
        "total_minor": 300, "currency": "EUR",
        "lines": [{"product_id": "apple", "quantity": 2, "unit_price_minor": 150}],
    }  # fmt: skip


def committed(transfer_id: str, amount: int = 300) -> dict[str, object]:
    return {
        "transfer_id": transfer_id, "from_account": "acc_0_a", "to_account": "acc_0_b",
        "amount_minor": amount, "currency": "EUR", "reference": "order x",
        "initiator": "alice", "path": "local", "committed_at": "2030-01-01T12:00:00Z",
    }  # fmt: skip


class Feed:
    """Events applied the way the consumer does: each in a unit of work of its own."""

    def __init__(self, store: FakeStore) -> None:
        self.uow = FakeUowFactory(store)

    def order_event(self, name: str, data: dict[str, object], at: dt.datetime = T0) -> Apply:
        async def apply() -> bool:
            async with self.uow() as uow:
                applied = await history.record_order_event(
                    uow.history, event_id=str(uuid.uuid4()), event_type=f"flotilla.orders.{name}",
                    data=data, at=at,
                )  # fmt: skip
                await uow.commit()
            return applied

        return apply

    def transfer(self, data: dict[str, object]) -> Apply:
        async def apply() -> None:
            async with self.uow() as uow:
                await history.record_transfer_committed(
                    uow.history, event_id=str(uuid.uuid4()), data=data, at=T0
                )
                await uow.commit()

        return apply

    async def page(self, subject: str = "alice") -> history.HistoryPage:
        async with self.uow(write=False) as uow:
            return await history.order_history(uow, principal=who(subject, "customer"), limit=10)


async def states(feed: Feed) -> list[tuple[str, str]]:
    return [(e.outcome.order_id, e.payment_state.value) for e in (await feed.page()).items]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_a_paid_order_is_paid_whatever_arrives_first(order: tuple[int, ...]) -> None:
    feed = Feed(FakeStore())
    events = [
        feed.order_event("order_confirmed", confirmed("o-1", "t-1")),
        feed.transfer(committed("t-1")),
        feed.transfer(committed("t-other")),  # someone else's transfer: no effect on o-1
    ]
    for index in order:
        await events[index]()
    assert await states(feed) == [("o-1", "paid")]


async def test_until_the_payment_event_arrives_an_order_is_unpaid() -> None:
    feed = Feed(FakeStore())
    await feed.order_event("order_confirmed", confirmed("o-1", "t-1"))()
    ((entry),) = (await feed.page()).items
    assert entry.payment_state is PaymentState.UNPAID
    assert (entry.outcome.total_minor, entry.outcome.currency) == (300, "EUR")
    assert [(line.product_id, line.quantity) for line in entry.outcome.lines or ()] == [
        ("apple", 2)
    ]


@pytest.mark.parametrize("refund_first", [True, False])
async def test_a_refunded_order_is_refunded(refund_first: bool) -> None:
    feed = Feed(FakeStore())
    steps = [feed.transfer(committed("t-refund")), feed.order_event(
        "order_cancelled", cancelled("o-1", "reservation-expired", "t-refund")
    )]  # fmt: skip
    for step in steps if refund_first else steps[::-1]:
        await step()
    ((entry),) = (await feed.page()).items
    assert (entry.payment_state, entry.outcome.reason) == (
        PaymentState.REFUNDED, "reservation-expired",
    )  # fmt: skip
    assert entry.outcome.total_minor is None


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
async def test_a_confirmed_order_refunded_since_is_refunded_whatever_arrives_first(
    order: tuple[int, ...],
) -> None:
    feed = Feed(FakeStore())
    events = [
        feed.order_event("order_confirmed", confirmed("o-1", "t-pay")),
        feed.order_event("order_refunded", refunded("o-1", "t-back")),
        feed.transfer(committed("t-pay")),
        feed.transfer(committed("t-back")),
    ]
    for index in order:
        await events[index]()
    ((entry),) = (await feed.page()).items
    assert (entry.outcome.state.value, entry.payment_state) == ("REFUNDED", PaymentState.REFUNDED)
    assert (entry.outcome.payment_transfer_id, entry.outcome.refund_transfer_id) == (
        "t-pay", "t-back",
    )  # fmt: skip
    assert (entry.outcome.total_minor, entry.outcome.reason) == (300, None)


async def test_a_refund_shows_before_its_transfer_is_known_to_have_committed() -> None:
    feed = Feed(FakeStore())
    await feed.order_event("order_confirmed", confirmed("o-1", "t-pay"))()
    await feed.transfer(committed("t-pay"))()
    assert await feed.order_event("order_refunded", refunded("o-1", "t-back"))()
    ((entry),) = (await feed.page()).items
    assert (entry.outcome.state.value, entry.payment_state) == ("REFUNDED", PaymentState.PAID)


async def test_copies_of_a_fact_change_nothing() -> None:
    store = FakeStore()
    feed = Feed(store)
    for _ in range(3):
        await feed.order_event("order_cancelled", cancelled("o-1", "out-of-stock"))()
        await feed.transfer(committed("t-1"))()
    assert len(store.outcomes) == len(store.transfers) == 1
    assert await states(feed) == [("o-1", "unpaid")]


async def test_other_events_of_ours_are_not_history() -> None:
    feed = Feed(FakeStore())
    assert not await feed.order_event("order_placed", {"order_id": "o-1"})()
    assert await states(feed) == []


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("order_confirmed", {**confirmed("o-1", "t-1"), "total_minor": "300"}),
        ("order_confirmed", {**confirmed("o-1", "t-1"), "lines": []}),
        ("order_confirmed", {**confirmed("o-1", "t-1"), "payment_transfer_id": None}),
        ("order_cancelled", {**cancelled("o-1", "out-of-stock"), "customer_id": 7}),
        ("order_cancelled", {"order_id": "o-1", "customer_id": "alice"}),
        ("order_refunded", {**refunded("o-1", "t-1"), "refund_transfer_id": None}),
        ("order_refunded", {**refunded("o-1", "t-1"), "total_minor": None}),
        ("order_refunded", {**refunded("o-1", "t-1"), "lines": None}),
    ],
)
async def test_an_event_that_breaks_its_contract_is_refused(
    name: str, data: dict[str, object]
) -> None:
    store = FakeStore()
    with pytest.raises(InvalidEventData):
        await Feed(store).order_event(name, data)()
    assert store.outcomes == {}
    assert store.refunds == {}
    with pytest.raises(InvalidEventData, match="amount_minor"):
        await Feed(store).transfer({**committed("t-1"), "amount_minor": True})()


async def test_the_history_is_the_readers_own_newest_first() -> None:
    feed = Feed(FakeStore())
    for n in range(3):
        at = T0 + dt.timedelta(minutes=n)
        await feed.order_event("order_confirmed", confirmed(f"o-{n}", f"t-{n}"), at)()
    await feed.order_event("order_confirmed", confirmed("b-1", "t-b", customer="bob"))()
    async with feed.uow(write=False) as uow:
        page = await history.order_history(uow, principal=who("alice", "customer"), limit=2)
        assert ([e.outcome.order_id for e in page.items], page.next_after) == (
            ["o-2", "o-1"],
            "o-1",
        )
        rest = await history.order_history(
            uow, principal=who("alice", "customer"), limit=2, after=page.next_after
        )
        assert ([e.outcome.order_id for e in rest.items], rest.next_after) == (["o-0"], None)
        with pytest.raises(InvalidCursor):
            await history.order_history(
                uow, principal=who("alice", "customer"), limit=2, after="b-1"
            )
        with pytest.raises(NotAllowed):
            await history.order_history(
                uow, principal=who("alice", "customer"), limit=2, customer_id="bob"
            )
        staff = await history.order_history(
            uow, principal=who("sam", "support"), limit=10, customer_id="bob"
        )
        assert [e.outcome.order_id for e in staff.items] == ["b-1"]
        with pytest.raises(NotAllowed):
            await history.order_history(uow, principal=who("svc", "service:payments"), limit=2)
