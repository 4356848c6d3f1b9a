"""The catalogue's use cases against in-memory fakes: who may change what, the rules of a
product, stock adjustments that never go below what is held, events and audit records."""

from __future__ import annotations

import pytest

from flotilla_inventory.domain import StockReason
from flotilla_inventory.service_layer import catalogue
from flotilla_inventory.service_layer.errors import (
    DuplicateSku,
    InsufficientStock,
    InvalidCursor,
    InvalidProduct,
    NotAllowed,
    ProductNotFound,
)
from flotilla_kit.rbac import permissions_of
from flotilla_kit.tokens import Principal

from .fakes import START, FakeUow, Store


def principal(*roles: str) -> Principal:
    return Principal(
        subject="ada", roles=frozenset(roles), token_id="t", expires_at=float("inf"),
        permissions=permissions_of(roles),
    )  # fmt: skip


ADMIN, CUSTOMER = principal("admin"), principal("customer")
NEW = {"sku": "MUG-1", "name": "Mug", "price_minor": 1250, "currency": "EUR", "on_hand": 7}


async def test_create_adds_the_product_with_its_first_stock_event_and_an_audit_record() -> None:
    store = Store()
    async with FakeUow(store) as uow:
        product = await catalogue.create_product(uow, principal=ADMIN, now=START, **NEW)  # type: ignore[arg-type]
        await uow.commit()
    assert product.id.startswith("prd_")
    assert (product.on_hand, product.held, product.version) == (7, 0, 1)
    assert store.products[product.id] == product
    [(level, reason)] = store.events
    assert (level.on_hand, level.version, reason) == (7, 1, StockReason.CREATED)
    [(actor, action, target, details)] = store.audit
    assert (actor, action, target, details["sku"]) == (
        "ada",
        "product.created",
        product.id,
        "MUG-1",
    )


async def test_a_customer_may_not_create_and_nothing_is_written() -> None:
    store = Store()
    async with FakeUow(store) as uow:
        with pytest.raises(NotAllowed):
            await catalogue.create_product(uow, principal=CUSTOMER, now=START, **NEW)  # type: ignore[arg-type]
    assert store.products == {}


async def test_a_taken_sku_is_refused() -> None:
    store = Store()
    store.add_product("prd_x", sku="MUG-1")
    async with FakeUow(store) as uow:
        with pytest.raises(DuplicateSku):
            await catalogue.create_product(uow, principal=ADMIN, now=START, **NEW)  # type: ignore[arg-type]
    assert list(store.products) == ["prd_x"]


@pytest.mark.parametrize(
    "change",
    [{"price_minor": 0}, {"currency": "XXX"}, {"on_hand": -1}, {"sku": "no spaces"}, {"name": ""}],
)
async def test_an_invalid_product_is_refused(change: dict[str, object]) -> None:
    store = Store()
    async with FakeUow(store) as uow:
        with pytest.raises(InvalidProduct):
            await catalogue.create_product(uow, principal=ADMIN, now=START, **{**NEW, **change})  # type: ignore[arg-type]
    assert store.products == {}


async def test_a_page_of_the_catalogue_says_where_the_next_starts() -> None:
    store = Store()
    for sku in ("C", "A", "D", "B"):
        store.add_product(f"prd_{sku.lower()}", sku=sku)
    async with FakeUow(store) as uow:
        first, after = await catalogue.list_products(uow, limit=3)
        rest, last = await catalogue.list_products(uow, limit=3, after=after)
        with pytest.raises(InvalidCursor):
            await catalogue.list_products(uow, limit=3, after="not a sku!")
    assert [p.sku for p in first] == ["A", "B", "C"]
    assert after == "C"
    assert ([p.sku for p in rest], last) == (["D"], None)


async def test_get_of_an_unknown_product_is_not_found() -> None:
    async with FakeUow(Store()) as uow:
        with pytest.raises(ProductNotFound):
            await catalogue.get_product(uow, product_id="prd_nope")


async def test_update_renames_and_reprices_without_touching_stock() -> None:
    store = Store()
    store.add_product("prd_a", on_hand=5, held=2)
    async with FakeUow(store) as uow:
        product = await catalogue.update_product(
            uow, principal=ADMIN, product_id="prd_a", name="Big mug", price_minor=1500, now=START
        )
        await uow.commit()
    assert (product.name, product.price_minor, product.on_hand, product.held, product.version) == (
        "Big mug", 1500, 5, 2, 1,
    )  # fmt: skip
    assert store.events == []
    assert store.audit[0][1:3] == ("product.updated", "prd_a")


@pytest.mark.parametrize(
    ("who", "fields", "error"),
    [
        (CUSTOMER, {"name": "x"}, NotAllowed),
        (ADMIN, {}, InvalidProduct),
        (ADMIN, {"price_minor": 0}, InvalidProduct),
        (ADMIN, {"name": " "}, InvalidProduct),
    ],
)
async def test_update_refusals_change_nothing(
    who: Principal, fields: dict[str, object], error: type[Exception]
) -> None:
    store = Store()
    store.add_product("prd_a")
    before = store.state()
    async with FakeUow(store) as uow:
        with pytest.raises(error):
            await catalogue.update_product(
                uow,
                principal=who,
                product_id="prd_a",
                now=START,
                **fields,  # type: ignore[arg-type]
            )
    assert store.state() == before


async def test_update_of_an_unknown_product_is_not_found() -> None:
    async with FakeUow(Store()) as uow:
        with pytest.raises(ProductNotFound):
            await catalogue.update_product(
                uow, principal=ADMIN, product_id="prd_nope", name="x", now=START
            )


async def test_adjust_moves_stock_on_hand_with_an_event_and_an_audit_record() -> None:
    store = Store()
    store.add_product("prd_a", on_hand=5, held=2)
    async with FakeUow(store) as uow:
        product = await catalogue.adjust_stock(
            uow, principal=ADMIN, product_id="prd_a", delta=-3, reason="broken", now=START
        )
        await uow.commit()
    assert (product.on_hand, product.held, product.available, product.version) == (2, 2, 0, 2)
    [(level, reason)] = store.events
    assert (level.on_hand, level.version, reason) == (2, 2, StockReason.ADJUSTED)
    assert store.audit[0][3] == {"delta": -3, "reason": "broken", "on_hand": 2}


@pytest.mark.parametrize(
    ("delta", "reason", "error"),
    [
        (-4, "lost", InsufficientStock),  # would leave 1 on hand with 2 held
        (0, "nothing", InvalidProduct),
        (1, "", InvalidProduct),
        (1, "r" * 141, InvalidProduct),
        (10**9, "too many", InvalidProduct),
    ],
)
async def test_adjust_refusals_change_nothing(
    delta: int, reason: str, error: type[Exception]
) -> None:
    store = Store()
    store.add_product("prd_a", on_hand=5, held=2)
    before = store.state()
    async with FakeUow(store) as uow:
        with pytest.raises(error):
            await catalogue.adjust_stock(
                uow, principal=ADMIN, product_id="prd_a", delta=delta, reason=reason, now=START
            )
    assert store.state() == before


async def test_adjust_needs_the_permission_and_a_product() -> None:
    store = Store()
    store.add_product("prd_a")
    async with FakeUow(store) as uow:
        with pytest.raises(NotAllowed):
            await catalogue.adjust_stock(
                uow, principal=CUSTOMER, product_id="prd_a", delta=1, reason="r", now=START
            )
        with pytest.raises(ProductNotFound):
            await catalogue.adjust_stock(
                uow, principal=ADMIN, product_id="prd_nope", delta=1, reason="r", now=START
            )
