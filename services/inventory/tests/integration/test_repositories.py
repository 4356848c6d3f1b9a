"""The SQL repositories where their statements have shapes of their own, on SQLite and
PostgreSQL: reservations inserted in batches of several statements (taken ids left
alone), a reservation read with its lines in one statement, products by a list of ids
bound as one parameter, details changed one at a time, the catalogue's pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from flotilla_inventory.adapters import SqlInventoryUnitOfWork, metadata
from flotilla_inventory.domain import (
    Product,
    Refusal,
    Reservation,
    ReservationState,
    ReservedLine,
    refused,
)
from flotilla_kit.db import Database
from flotilla_kit.testing import create_tables

NOW = dt.datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    await create_tables(database_url, metadata)
    db = Database(database_url)
    try:
        yield db
    finally:
        await db.dispose()


def _product(product_id: str, sku: str, *, on_hand: int = 10) -> Product:
    return Product(
        id=product_id, sku=sku, name=f"Product {sku}", price_minor=1250, currency="EUR",
        on_hand=on_hand, held=0, version=1, created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def _held(reservation_id: str, *lines: ReservedLine) -> Reservation:
    return Reservation(
        id=reservation_id,
        state=ReservationState.HELD,
        created_at=NOW,
        lines=lines,
        expires_at=NOW + dt.timedelta(seconds=60),
        fingerprint=f"fp-{reservation_id}",
    )


async def _add_products(database: Database, *products: Product) -> None:
    async with SqlInventoryUnitOfWork(database) as uow:
        for product in products:
            assert await uow.products.add(product)
        await uow.commit()


async def test_a_batch_past_one_statement_inserts_the_free_ids_with_their_lines(
    database: Database,
) -> None:
    await _add_products(database, _product("prd_a", "A"), _product("prd_b", "B"))
    taken = {
        "r-003": _held("r-003"),
        "r-064": refused("r-064", Refusal.OUT_OF_STOCK, "short", now=NOW, fingerprint="fp"),
    }
    async with SqlInventoryUnitOfWork(database) as uow:
        for reservation in taken.values():
            assert await uow.reservations.add(reservation)
        await uow.commit()
    line_a, line_b = ReservedLine("prd_a", 1, 1250, "EUR"), ReservedLine("prd_b", 2, 1250, "EUR")
    # 70 rows: a statement of 64 (r-064 the first of the next), then one of 6.
    batch = [_held(f"r-{i:03}", line_b, line_a) for i in range(70)]
    async with SqlInventoryUnitOfWork(database) as uow:
        inserted = await uow.reservations.add_many(batch)
        await uow.commit()
    assert inserted == {r.id for r in batch} - set(taken)
    async with SqlInventoryUnitOfWork(database, write=False) as uow:
        for reservation in batch:
            found = await uow.reservations.get(reservation.id)
            if reservation.id in taken:
                assert found == taken[reservation.id]  # left alone, without lines
            else:
                # As written, its lines in product order.
                assert found == _held(reservation.id, line_a, line_b)
        assert await uow.reservations.get("r-070") is None


async def test_an_empty_batch_inserts_nothing(database: Database) -> None:
    async with SqlInventoryUnitOfWork(database) as uow:
        assert await uow.reservations.add_many([]) == set()


async def test_products_by_a_list_of_ids(database: Database) -> None:
    await _add_products(database, _product("prd_a", "A"), _product("prd_b", "B", on_hand=3))
    async with SqlInventoryUnitOfWork(database, write=False) as uow:
        found = await uow.products.get_many(["prd_b", "prd_nope", "prd_a", "prd_b"])
        assert {k: (p.sku, p.on_hand) for k, p in found.items()} == {
            "prd_a": ("A", 10), "prd_b": ("B", 3),
        }  # fmt: skip
        assert await uow.products.get_many(["prd_nope"]) == {}
        assert await uow.products.get_many([]) == {}


async def test_details_not_given_keep_their_value(database: Database) -> None:
    await _add_products(database, _product("prd_a", "A"))
    later = NOW + dt.timedelta(minutes=5)
    async with SqlInventoryUnitOfWork(database) as uow:
        renamed = await uow.products.update_details(
            "prd_a", name="Renamed", price_minor=None, now=later
        )
        repriced = await uow.products.update_details("prd_a", name=None, price_minor=990, now=later)
        both = await uow.products.update_details("prd_a", name="Both", price_minor=7, now=later)
        missing = await uow.products.update_details("prd_nope", name="x", price_minor=1, now=later)
        await uow.commit()
    assert renamed is not None
    assert repriced is not None
    assert both is not None
    assert (renamed.name, renamed.price_minor, renamed.updated_at) == ("Renamed", 1250, later)
    assert (repriced.name, repriced.price_minor) == ("Renamed", 990)
    assert (both.name, both.price_minor, both.version, both.on_hand) == ("Both", 7, 1, 10)
    assert missing is None


async def test_pages_of_the_catalogue_in_sku_order(database: Database) -> None:
    await _add_products(database, *(_product(f"prd_{sku}", sku) for sku in ("C", "A", "D", "B")))
    async with SqlInventoryUnitOfWork(database, write=False) as uow:
        first = await uow.products.page(limit=3, after_sku=None)
        rest = await uow.products.page(limit=3, after_sku=first[-1].sku)
    assert [p.sku for p in first] == ["A", "B", "C"]
    assert [p.sku for p in rest] == ["D"]
    assert first[0] == _product("prd_A", "A")
