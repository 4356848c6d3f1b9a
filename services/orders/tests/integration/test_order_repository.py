"""The order repository on both databases: an order comes back with all its lines, in
order, from the one statement that reads it; a page holds `limit` orders (not lines),
newest first, ties broken by id; prices set by a save come back with the order."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from flotilla_kit.db import Database
from flotilla_kit.migrations import upgrade_to_head
from flotilla_orders.adapters import SqlUnitOfWorkFactory
from flotilla_orders.bootstrap import MIGRATIONS
from flotilla_orders.domain import Order, OrderState, new_order

T0 = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def an_order(customer: str, at: dt.datetime, *lines: tuple[str, int]) -> Order:
    return new_order(
        customer_id=customer, lines=lines, currency="EUR", payment_account="acc_1_a",
        shop_account="acc_0_s", shop_owner="shop", now=at, reserve_within_s=30,
        lease_owner="o-0", lease_s=10,
    )  # fmt: skip


@pytest.fixture
async def uow(database_url: str) -> AsyncIterator[SqlUnitOfWorkFactory]:
    await asyncio.to_thread(upgrade_to_head, database_url, MIGRATIONS)
    database = Database(database_url)
    try:
        yield SqlUnitOfWorkFactory(database)
    finally:
        await database.dispose()


async def test_orders_come_back_whole_and_pages_count_orders(uow: SqlUnitOfWorkFactory) -> None:
    # Two orders at the same moment (the page orders them by id), one later, one of bob's.
    tied = [an_order("alice", T0, ("apple", 2), ("pear", 1), ("tea", 3)) for _ in range(2)]
    later = an_order("alice", T0 + dt.timedelta(seconds=1), ("kiwi", 1))
    bobs = an_order("bob", T0, ("apple", 1))
    async with uow() as u:
        for order in [*tied, later, bobs]:
            await u.orders.add(order)
        await u.commit()
    first, second = sorted(tied, key=lambda o: o.id, reverse=True)
    paying = first.reserved({"apple": 150, "pear": 200, "tea": 0}, at=T0)
    async with uow() as u:
        assert await u.orders.save(paying, expected_version=first.version, owner="o-0", prices=True)
        await u.commit()

    async with uow(write=False) as u:
        assert await u.orders.get(first.id) == paying
        assert await u.orders.get(bobs.id) == bobs
        page = await u.orders.page_for_customer("alice", limit=2, after=None)
        rest = await u.orders.page_for_customer("alice", limit=2, after=page[-1])
        everything = await u.orders.page_for_customer("alice", limit=100, after=None)
    assert page == [later, paying]
    assert rest == [second]
    assert everything == [later, paying, second]
    assert [line.product_id for line in paying.lines] == ["apple", "pear", "tea"]


async def test_pages_in_a_state_of_one_customer_or_everyone(uow: SqlUnitOfWorkFactory) -> None:
    alices = [an_order("alice", T0 + dt.timedelta(seconds=n), ("apple", 1)) for n in range(3)]
    bobs = an_order("bob", T0 + dt.timedelta(seconds=5), ("pear", 2), ("tea", 1))
    async with uow() as u:
        for order in [*alices, bobs]:
            await u.orders.add(order)
        await u.commit()
    cancelled = alices[1].out_of_stock(at=T0)
    async with uow() as u:
        assert await u.orders.save(cancelled, expected_version=alices[1].version, owner="o-0")
        await u.commit()
    pending = OrderState.PENDING
    async with uow(write=False) as u:
        first = await u.orders.page_in_state(pending, limit=2, after=None)
        rest = await u.orders.page_in_state(pending, limit=2, after=first[-1])
        gone = await u.orders.page_in_state(OrderState.CANCELLED, limit=5, after=None)
        alices_pending = await u.orders.page_for_customer(
            "alice", limit=5, after=None, state=pending
        )
        alices_next = await u.orders.page_for_customer(
            "alice", limit=5, after=alices[2], state=pending
        )
        confirmed = await u.orders.page_in_state(OrderState.CONFIRMED, limit=5, after=None)
    assert first == [bobs, alices[2]]  # whole, with every line
    assert rest == [alices[0]]
    assert gone == [cancelled]
    assert alices_pending == [alices[2], alices[0]]
    assert alices_next == [alices[0]]
    assert confirmed == []


async def test_a_missing_order_is_none(uow: SqlUnitOfWorkFactory) -> None:
    async with uow(write=False) as u:
        assert await u.orders.get(an_order("alice", T0, ("apple", 1)).id) is None
        assert await u.orders.page_for_customer("alice", limit=5, after=None) == []
