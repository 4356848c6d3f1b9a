"""The migrations on both backends: they build exactly the tables the code declares, go
down and up again, and the database itself refuses stock below zero."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from flotilla_inventory.adapters.tables import metadata
from flotilla_inventory.bootstrap import MIGRATIONS
from flotilla_kit.db import CheckViolation, Database, Query, UniqueViolation

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
PRODUCT = (
    "INSERT INTO products (id, sku, name, price_minor, currency, on_hand, held, version,"
    " created_at, updated_at) VALUES ('prd_1', :sku, 'n', :price, :currency, :on_hand, :held,"
    " 1, :now, :now)"
)
RESERVATION = (
    "INSERT INTO reservations (id, state, refusal, detail, short_products, fingerprint,"
    " created_at, expires_at, decided_at) VALUES ('r', :state, :refusal, '', '[]', 'f', :now,"
    " :expires_at, :decided_at)"
)
_GOOD_PRODUCT = {"sku": "S-1", "price": 1, "currency": "EUR", "on_hand": 2, "held": 0}
_GOOD_RESERVATION = {"state": "held", "refusal": None, "expires_at": NOW, "decided_at": None}


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def _upgrade(url: str, to: str = "head") -> None:
    await asyncio.to_thread(command.upgrade, _alembic(url), to)


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _run(url: str, statement: str, **params: object) -> None:
    database = Database(url)
    try:
        async with database.transaction() as tx:
            await tx.execute(Query(text(statement)), now=NOW, **params)
            await tx.commit()
    finally:
        await database.dispose()


async def test_the_migrations_build_what_the_code_declares(database_url: str) -> None:
    await _upgrade(database_url)
    # Alembic compares through a SQLAlchemy connection of its own, as the migrations run.
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await engine.dispose()
    await asyncio.to_thread(command.downgrade, _alembic(database_url), "base")
    await _upgrade(database_url)


async def test_the_outbox_arrives_over_a_stocked_shop(database_url: str) -> None:
    await _upgrade(database_url, "0001")
    await _run(database_url, PRODUCT, **_GOOD_PRODUCT)
    await _upgrade(database_url)
    await _run(
        database_url,
        "INSERT INTO outbox (event_id, subject, payload, created_at)"
        " VALUES ('e1', 'flotilla.inventory.stock_changed', '{}', :now)",
    )
    await asyncio.to_thread(command.downgrade, _alembic(database_url), "0001")
    with pytest.raises(UniqueViolation):  # the product is still there, with its sku
        await _run(database_url, PRODUCT, **_GOOD_PRODUCT)


@pytest.mark.parametrize(
    ("statement", "good", "bad"),
    [
        (PRODUCT, _GOOD_PRODUCT, {"held": 3}),  # held above on hand
        (PRODUCT, _GOOD_PRODUCT, {"on_hand": -1}),
        (PRODUCT, _GOOD_PRODUCT, {"held": -1}),
        (PRODUCT, _GOOD_PRODUCT, {"price": 0}),
        (PRODUCT, _GOOD_PRODUCT, {"currency": "XYZ"}),
        (RESERVATION, _GOOD_RESERVATION, {"expires_at": None}),  # a hold without a deadline
        (RESERVATION, _GOOD_RESERVATION, {"state": "lost", "decided_at": NOW}),
        (RESERVATION, _GOOD_RESERVATION, {"state": "refused", "decided_at": NOW}),  # no reason
        (RESERVATION, _GOOD_RESERVATION, {"refusal": "out_of_stock"}),  # held, yet refused
    ],
)
async def test_the_database_refuses_what_the_rules_forbid(
    database_url: str, statement: str, good: dict[str, object], bad: dict[str, object]
) -> None:
    await _upgrade(database_url)
    with pytest.raises(CheckViolation):
        await _run(database_url, statement, **{**good, **bad})
    # The same row without the fault goes in: the refusal was about the fault.
    await _run(database_url, statement, **good)


async def test_stock_cannot_be_held_twice_over_by_sql_either(database_url: str) -> None:
    await _upgrade(database_url)
    await _run(database_url, PRODUCT, **{**_GOOD_PRODUCT, "on_hand": 5, "held": 5})
    with pytest.raises(CheckViolation):
        await _run(database_url, "UPDATE products SET held = held + 1 WHERE id = 'prd_1'")
    with pytest.raises(CheckViolation):
        await _run(database_url, "UPDATE products SET on_hand = on_hand - 1 WHERE id = 'prd_1'")
