"""Placing an order: what is refused before anything is written, Idempotency-Keys, and
the reads (who sees which orders)."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla_kit.resource_keys import KeyedResource
from flotilla_kit.testing import principal as who
from flotilla_kit.tokens import Principal
from flotilla_orders.domain import OrderState, new_order
from flotilla_orders.service_layer import use_cases
from flotilla_orders.service_layer.errors import (
    CurrencyMismatch,
    DependencyUnavailable,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidOrder,
    NotAllowed,
    OrderNotFound,
    PaymentAccountInvalid,
    UnknownProducts,
)
from services.orders.tests.unit.world import World, fingerprint_of


def nothing_written(world: World) -> bool:
    return not world.store.orders and not world.store.keys and not world.store.events


async def test_unknown_products_are_named(world: World) -> None:
    one = world.instance()
    with pytest.raises(UnknownProducts) as refused:
        await world.place(one, (("apple", 1), ("kiwi", 1), ("plum", 2)))
    assert refused.value.product_ids == ["kiwi", "plum"]
    assert nothing_written(world)
    assert world.inventory.calls_of("Reserve") == []
    assert world.metric("flotilla_orders_refused_total", problem="unknown-product") == 1


@pytest.mark.parametrize(
    "account",
    [
        "someone else's",
        "acc_0_00000000000000000000000000000000",  # no such account
    ],
)
async def test_a_payment_account_that_is_not_yours_looks_like_a_missing_one(
    world: World, account: str
) -> None:
    if account == "someone else's":
        account = world.bank.open("bob", 10_000)
    with pytest.raises(PaymentAccountInvalid):
        await world.place(world.instance(), account=account)
    assert nothing_written(world)


async def test_products_must_be_priced_in_the_accounts_currency(world: World) -> None:
    world.stock.add("tea", 300, currency="USD")
    with pytest.raises(CurrencyMismatch) as refused:
        await world.place(world.instance(), (("apple", 1), ("tea", 1)))
    assert (refused.value.account_currency, refused.value.product_ids) == ("EUR", ["tea"])
    assert nothing_written(world)


async def test_an_unreachable_dependency_is_a_503_and_writes_nothing(world: World) -> None:
    one = world.instance()
    world.inventory.down = {"GetAvailability"}
    with pytest.raises(DependencyUnavailable) as refused:
        await world.place(one)
    assert refused.value.dependency == "inventory"
    world.inventory.down = set()
    world.bank.accounts_down = True
    with pytest.raises(DependencyUnavailable) as refused:
        await world.place(one)
    assert refused.value.dependency == "accounts"
    assert nothing_written(world)


async def test_a_definite_refusal_beats_a_dependency_that_did_not_answer(world: World) -> None:
    one = world.instance()
    world.bank.accounts_down = True
    with pytest.raises(UnknownProducts):
        await world.place(one, (("kiwi", 1),))
    world.bank.accounts_down = False
    world.inventory.down = {"GetAvailability"}
    with pytest.raises(PaymentAccountInvalid):
        await world.place(one, account=world.bank.open("bob"))
    assert nothing_written(world)


async def test_requests_no_order_may_make(world: World) -> None:
    one = world.instance()
    with pytest.raises(IdempotencyKeyRequired):
        await world.place(one, key=None)
    with pytest.raises(NotAllowed):
        await world.place(one, principal=who("sam", "support"))
    with pytest.raises(InvalidOrder, match="on two lines"):
        await world.place(one, (("apple", 1), ("apple", 1)))
    with pytest.raises(InvalidOrder, match="between 1 and 10000"):
        await world.place(one, (("apple", 0),))
    assert nothing_written(world)
    assert world.inventory.calls == []  # refused before anyone was asked


async def test_the_same_key_replays_the_order_as_it_is_now(world: World) -> None:
    one = world.instance()
    first = await world.place(one)
    await world.drive_out(one)
    again = await world.place(one)
    assert again.replayed
    assert again.order.id == first.order.id
    assert again.order.state.value == "CONFIRMED"
    assert len(world.store.orders) == 1
    assert len(world.stock.holds) == len(world.bank.applied) == 1
    # A replay needs no checks: it answers while the dependencies are down.
    world.inventory.down = {"GetAvailability"}
    world.bank.accounts_down = True
    assert (await world.place(one)).order.id == first.order.id


async def test_the_same_key_with_another_order_is_refused(world: World) -> None:
    one = world.instance()
    await world.place(one)
    with pytest.raises(IdempotencyKeyReused):
        await world.place(one, (("apple", 3),))
    assert len(world.store.orders) == 1


async def test_keys_are_per_customer(world: World) -> None:
    one = world.instance()
    bob_wallet = world.bank.open("bob", 10_000)
    mine = await world.place(one)
    bobs = await world.place(one, account=bob_wallet, principal=who("bob", "customer"))
    assert not bobs.replayed
    assert mine.order.id != bobs.order.id
    assert len(world.store.orders) == 2


async def test_a_request_that_loses_the_race_for_its_key_replays_the_winner(world: World) -> None:
    one = world.instance()
    winner = new_order(
        customer_id="alice", lines=[("apple", 2), ("pear", 1)], currency="EUR",
        payment_account=world.wallet, shop_account=world.shop, shop_owner="shop",
        now=world.clock(), reserve_within_s=30, lease_owner="o-9", lease_s=5,
    )  # fmt: skip

    def a_concurrent_request_commits_first() -> None:
        world.store.orders[winner.id] = winner
        world.store.keys[("alice:orders", "k-1")] = KeyedResource(
            fingerprint=_fingerprint(world), resource_id=winner.id
        )

    world.store.before_remember = a_concurrent_request_commits_first
    placed = await world.place(one)
    assert placed.replayed
    assert placed.order == winner
    assert list(world.store.orders) == [winner.id]  # ours was rolled back
    assert one.saga.drives == frozenset()  # and nobody drives it


def _fingerprint(world: World) -> str:
    return fingerprint_of((("apple", 2), ("pear", 1)), world.wallet)


# -- reads -----------------------------------------------------------------------------------


async def place_three(world: World) -> list[str]:
    one = world.instance()
    ids: list[str] = []
    for n in range(3):
        ids.append(str((await world.place(one, key=f"k-{n}")).order.id))
        world.clock.advance(1)
    await world.drive_out(one)
    return ids


async def test_customers_read_their_own_orders_newest_first(world: World) -> None:
    ids = await place_three(world)
    alice = world.alice
    async with world.uow(write=False) as uow:
        first = await use_cases.list_orders(uow, principal=alice, limit=2)
        assert [str(o.id) for o in first.items] == ids[::-1][:2]
        assert first.next_after == ids[1]
        rest = await use_cases.list_orders(uow, principal=alice, limit=2, after=first.next_after)
        assert [str(o.id) for o in rest.items] == [ids[0]]
        assert rest.next_after is None
        bobs = await use_cases.list_orders(uow, principal=who("bob", "customer"), limit=10)
        assert bobs.items == []
        with pytest.raises(InvalidCursor):  # not a cursor into bob's list
            await use_cases.list_orders(
                uow, principal=who("bob", "customer"), limit=2, after=ids[0]
            )
        with pytest.raises(InvalidCursor):
            await use_cases.list_orders(uow, principal=alice, limit=2, after="not-an-id")


async def test_staff_read_anyones_orders_customers_only_their_own(world: World) -> None:
    ids = await place_three(world)
    staff = who("sam", "support")
    async with world.uow(write=False) as uow:
        page = await use_cases.list_orders(uow, principal=staff, limit=10, customer_id="alice")
        assert len(page.items) == 3
        assert (await use_cases.get_order(uow, principal=staff, order_id=ids[0])).customer_id == (
            "alice"
        )
        with pytest.raises(NotAllowed):
            await use_cases.list_orders(
                uow, principal=who("bob", "customer"), limit=10, customer_id="alice"
            )
        with pytest.raises(OrderNotFound):  # the same answer as for a missing id
            await use_cases.get_order(uow, principal=who("bob", "customer"), order_id=ids[0])
        with pytest.raises(OrderNotFound):
            await use_cases.get_order(uow, principal=world.alice, order_id="nope")
        with pytest.raises(NotAllowed):
            await use_cases.get_order(uow, principal=who("x", "service:payments"), order_id=ids[0])
        own = await use_cases.list_orders(uow, principal=world.alice, limit=10, customer_id="alice")
        assert len(own.items) == 3


async def pending_orders(world: World, customer: str, n: int) -> list[str]:
    """`n` orders of `customer` just placed (PENDING), a second apart."""
    ids: list[str] = []
    async with world.uow() as uow:
        for _ in range(n):
            order = new_order(
                customer_id=customer, lines=(("apple", 1),), currency="EUR",
                payment_account=world.wallet, shop_account="acc_0_s", shop_owner="shop",
                now=world.clock(), reserve_within_s=30, lease_owner="o-0", lease_s=10,
            )  # fmt: skip
            await uow.orders.add(order)
            ids.append(str(order.id))
            world.clock.advance(1)
        await uow.commit()
    return ids


async def test_staff_list_everyones_orders_in_a_state_customers_their_own(world: World) -> None:
    confirmed = await place_three(world)
    alices = await pending_orders(world, "alice", 1)
    bobs = await pending_orders(world, "bob", 2)
    staff, bob = who("sam", "support"), who("bob", "customer")
    pending, done = OrderState.PENDING, OrderState.CONFIRMED

    async def listed(principal: Principal, **query: Any) -> list[str]:
        async with world.uow(write=False) as uow:
            page = await use_cases.list_orders(uow, principal=principal, limit=10, **query)
        return [str(o.id) for o in page.items]

    async with world.uow(write=False) as uow:
        first = await use_cases.list_orders(uow, principal=staff, limit=2, status=pending)
        rest = await use_cases.list_orders(
            uow, principal=staff, limit=2, status=pending, after=first.next_after
        )
    assert [str(o.id) for o in first.items] == bobs[::-1]
    assert ([str(o.id) for o in rest.items], rest.next_after) == (alices, None)
    assert await listed(staff, status=done) == confirmed[::-1]
    assert await listed(staff, status=pending, customer_id="bob") == bobs[::-1]
    assert await listed(staff) == []  # no status: their own orders, as before
    assert await listed(world.alice, status=pending) == alices
    assert await listed(world.alice, status=done) == confirmed[::-1]
    assert await listed(bob, status=pending) == bobs[::-1]
    with pytest.raises(NotAllowed):
        await listed(bob, status=pending, customer_id="alice")
    with pytest.raises(InvalidCursor):  # a cursor into everyone's list is not one into bob's
        await listed(bob, status=pending, after=alices[0])
    with pytest.raises(InvalidCursor):
        await listed(staff, status=pending, after="not-an-id")
