"""Crash, restart, recover: on both databases, over the real stand-ins. An instance that
'dies' at a fault point is started again on the same database (its leases released at
start) and finishes the order exactly once; two instances recovering at once drive each
order once."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import insert, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from flotilla_kit.clock import ManualClock
from flotilla_kit.db import CheckViolation, Query, UniqueViolation
from flotilla_orders.adapters.tables import metadata
from flotilla_orders.bootstrap import MIGRATIONS
from flotilla_orders.domain import Order, OrderState
from flotilla_orders.service_layer.faults import FaultPoint
from services.orders.tests.fakes import CrashAt, SimulatedCrash
from services.orders.tests.integration.conftest import (
    ORDERS,
    AppFactory,
    Headers,
    World,
    client_of,
    order_body,
)

P = FaultPoint
ON_THE_WAY_TO_CONFIRMED = [
    P.AFTER_ORDER_RECORDED,
    P.AFTER_RESERVE_CALL,
    P.AFTER_PAYING_RECORDED,
    P.AFTER_PAY_CALL,
    P.AFTER_COMMITTING_RECORDED,
    P.AFTER_COMMIT_CALL,
    P.AFTER_FINAL_RECORDED,
]


async def the_only_order(app: FastAPI) -> Order:
    async with app.state.uow(write=False) as uow:
        (found,) = await uow.orders.page_for_customer("alice", limit=2, after=None)
    assert isinstance(found, Order)
    return found


@pytest.mark.parametrize(
    "point", ON_THE_WAY_TO_CONFIRMED, ids=[p.value for p in ON_THE_WAY_TO_CONFIRMED]
)
async def test_a_restarted_instance_finishes_what_its_previous_life_started(
    make_app: AppFactory, as_user: Headers, world: World, point: FaultPoint
) -> None:
    faults = CrashAt(point)
    async with make_app(faults=faults) as dying, client_of(dying) as client:
        with pytest.raises(SimulatedCrash):
            await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
        assert faults.crashed
        stuck = await the_only_order(dying)
    # The same instance id again, on the same database: what it held is its own.
    async with make_app() as restarted:
        report = await restarted.state.recovery.tick()
        order = await the_only_order(restarted)
        assert order.state is OrderState.CONFIRMED
        assert report.unfinished == 0
        assert report.claimed == (0 if stuck.is_final else 1)
        async with client_of(restarted) as client:
            read = await client.get(f"{ORDERS}/{order.id}", headers=as_user())
            replay = await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    assert read.json()["state"] == replay.json()["state"] == "CONFIRMED"
    assert replay.headers["idempotency-replayed"] == "true"
    assert len(world.bank.applied) == 1  # paid exactly once
    assert world.bank.balance(world.wallet) == 9_500
    assert world.stock.holds == world.stock.commits == [str(order.id)]
    assert world.stock.held() == 0


async def test_another_instance_takes_over_once_the_lease_has_expired(
    make_app: AppFactory, as_user: Headers, world: World, clock: ManualClock
) -> None:
    async with make_app(faults=CrashAt(P.AFTER_PAYING_RECORDED)) as dying, client_of(dying) as c:
        with pytest.raises(SimulatedCrash):
            await c.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    async with make_app(instance_id="o-1") as one, make_app(instance_id="o-2") as two:
        ticks = await asyncio.gather(one.state.recovery.tick(), two.state.recovery.tick())
        assert [r.claimed for r in ticks] == [0, 0]  # the dead instance's lease still holds
        clock.advance(6)
        ticks = await asyncio.gather(one.state.recovery.tick(), two.state.recovery.tick())
        assert sorted(r.claimed for r in ticks) == [0, 1]  # exactly one of them drives it
        assert (await the_only_order(one)).state is OrderState.CONFIRMED
    assert len(world.bank.applied) == 1
    assert len(world.bank.calls) == 1  # one payment call: nobody drove it twice
    assert len(world.inventory.calls_of("Commit")) == 1


async def test_migrations_build_exactly_the_tables_the_code_uses(app: FastAPI) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    # Alembic compares over a SQLAlchemy connection, which the kit's Database no longer has.
    engine = create_async_engine(app.state.database.url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


async def test_migration_0003_keeps_the_orders_both_ways(
    app: FastAPI, as_user: Headers, world: World, database_url: str
) -> None:
    async with client_of(app) as client:
        placed = await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    before = await the_only_order(app)
    assert before.state is OrderState.CONFIRMED
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    # The CHECKs of REFUNDING/REFUNDED are rebuilt (a new table on SQLite): rows survive.
    await asyncio.to_thread(command.downgrade, config, "0002")
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await the_only_order(app) == before
    async with client_of(app) as client:
        refunded = await client.post(
            f"{ORDERS}/{placed.json()['id']}/refund", headers=as_user("sam", "support")
        )
    assert refunded.json()["state"] == "REFUNDED"


async def test_the_database_refuses_what_no_order_may_be(
    app: FastAPI, as_user: Headers, world: World
) -> None:
    async with client_of(app) as client:
        placed = await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    statements = [
        "UPDATE order_lines SET quantity = 0",
        "UPDATE order_lines SET quantity = 10001",
        "UPDATE order_lines SET unit_price_minor = -1",
        "UPDATE orders SET total_minor = -5",
        "UPDATE orders SET payment_transfer_id = NULL",  # CONFIRMED needs its payment
        "UPDATE orders SET state = 'PENDING'",  # a finished saga is not pending
        "UPDATE orders SET reason = 'out-of-stock'",  # CONFIRMED has no reason
        "UPDATE orders SET state = 'SHIPPED'",
        "UPDATE orders SET lease_owner = 'o-9'",  # nobody drives a finished order
        "UPDATE orders SET pay_attempt = 0",
        "UPDATE orders SET state = 'REFUNDED'",  # refunded needs its refund transfer
        "UPDATE orders SET state = 'REFUNDING'",  # a refund in course is not finished
        "UPDATE orders SET step = 'refunding-order'",  # ... and is REFUNDING
        "UPDATE orders SET refund_refusal = 'x', state = 'REFUNDED', refund_transfer_id = 't'",
    ]
    for statement in statements:
        with pytest.raises(CheckViolation):
            async with app.state.database.transaction() as tx:
                await tx.execute(Query(text(statement)))
                await tx.commit()
    with pytest.raises(UniqueViolation):  # each product once per order
        async with app.state.database.transaction() as tx:
            await tx.execute(
                Query(
                    insert(metadata.tables["order_lines"]).values(
                        order_id=uuid.UUID(placed.json()["id"]), line_no=9,
                        product_id="apple", quantity=1,
                    )
                )
            )  # fmt: skip
            await tx.commit()
