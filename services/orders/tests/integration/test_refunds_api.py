"""`POST /api/v1/orders/{id}/refund` against real databases and the real HTTPS payments
stand-in (mutual TLS, the service's own token): a confirmed order's money back once with
`order_refunded` in the outbox, who may ask, what cannot be refunded, asking again, a
refusal, and a process that dies on the way (finished by recovery, one transfer)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from flotilla_kit.db import Query
from flotilla_kit.events import CloudEvent
from flotilla_orders.adapters.tables import outbox
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

PROBLEM = "application/problem+json"


async def place(client: httpx.AsyncClient, as_user: Headers, world: World, key: str) -> Any:
    response = await client.post(ORDERS, json=order_body(world), headers=as_user(key=key))
    assert response.status_code == 202, response.text
    return response.json()


def refund_url(order_id: str) -> str:
    return f"{ORDERS}/{order_id}/refund"


async def events_in(app: FastAPI) -> list[CloudEvent]:
    async with app.state.database.transaction(write=False) as tx:
        found = await tx.all(Query(select(outbox).order_by(outbox.c.seq)))
    return [CloudEvent.from_json(row.payload.encode()) for row in found]


async def test_support_refunds_a_confirmed_order_once(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, world: World
) -> None:
    order = await place(client, as_user, world, "o-1")
    assert order["state"] == "CONFIRMED"
    on_hand = world.stock.products["apple"].on_hand
    response = await client.post(refund_url(order["id"]), headers=as_user("sam", "support"))
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"{ORDERS}/{order['id']}"
    refunded = response.json()
    assert (refunded["state"], refunded["reason"], refunded["refund_refusal"]) == (
        "REFUNDED", None, None,
    )  # fmt: skip
    paid, back = world.bank.applied_transfers()
    assert refunded["refund_transfer_id"] == back.id
    assert refunded["payment_transfer_id"] == paid.id
    # From the shop's account, on its owner's behalf, to the account that paid.
    assert (back.from_account, back.to_account, back.amount_minor, back.initiator) == (
        world.shop, world.wallet, 500, "shop",
    )  # fmt: skip
    assert (world.bank.balance(world.wallet), world.bank.balance(world.shop)) == (10_000, 0)
    assert world.stock.products["apple"].on_hand == on_hand  # the goods stay sold
    confirmed, refund_event = await events_in(app)
    assert confirmed.type == "flotilla.orders.order_confirmed"
    assert (refund_event.type, refund_event.subject) == (
        "flotilla.orders.order_refunded", order["id"],
    )  # fmt: skip
    assert refund_event.data == {
        "order_id": order["id"],
        "customer_id": "alice",
        "refund_transfer_id": back.id,
        "total_minor": 500,
        "currency": "EUR",
        "lines": [
            {"product_id": "apple", "quantity": 2, "unit_price_minor": 150},
            {"product_id": "pear", "quantity": 1, "unit_price_minor": 200},
        ],
    }
    read = await client.get(f"{ORDERS}/{order['id']}", headers=as_user())
    assert read.json() == refunded  # the customer sees it too
    # Asking again (an admin this time, with a body) answers the same and moves nothing.
    again = await client.post(refund_url(order["id"]), json={}, headers=as_user("root", "admin"))
    assert (again.status_code, again.json()) == (202, refunded)
    assert len(world.bank.applied) == 2
    refund_calls = [key for _, key in world.bank.calls if ":refund:" in key]
    assert refund_calls == [f"order:{order['id']}:refund:1"]
    assert len(await events_in(app)) == 2


async def test_who_may_refund_and_what(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, world: World
) -> None:
    order = await place(client, as_user, world, "o-1")
    mine = await client.post(refund_url(order["id"]), headers=as_user())  # alice, a customer
    assert (mine.status_code, mine.headers["content-type"]) == (403, PROBLEM)
    assert mine.json()["type"].endswith("/forbidden")
    support = as_user("sam", "support")
    for missing in ("00000000-0000-0000-0000-000000000000", "nope"):
        response = await client.post(refund_url(missing), headers=support)
        assert (response.status_code, response.json()["type"].rsplit("/", 1)[-1]) == (
            404, "order-not-found",
        )  # fmt: skip
    out_of_stock = await client.post(
        ORDERS, json=order_body(world, ("apple", 99)), headers=as_user(key="o-2")
    )
    assert out_of_stock.json()["state"] == "CANCELLED"
    response = await client.post(refund_url(out_of_stock.json()["id"]), headers=support)
    assert (response.status_code, response.headers["content-type"]) == (409, PROBLEM)
    problem = response.json()
    assert (problem["type"].rsplit("/", 1)[-1], problem["state"]) == (
        "order-not-refundable", "CANCELLED",
    )  # fmt: skip
    assert len(world.bank.applied) == 1  # only the first order's payment
    assert [e.type for e in await events_in(app)] == [
        "flotilla.orders.order_confirmed", "flotilla.orders.order_cancelled",
    ]  # fmt: skip


@pytest.mark.parametrize("answer_within_s", [0.0])
async def test_a_pending_order_is_not_refundable(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, world: World
) -> None:
    world.inventory.reserve_gate = reserve = asyncio.Event()
    order = await place(client, as_user, world, "o-1")
    assert order["state"] == "PENDING"
    response = await client.post(refund_url(order["id"]), headers=as_user("sam", "support"))
    assert (response.status_code, response.json()["state"]) == (409, "PENDING")
    reserve.set()
    await app.state.saga.settle()
    assert world.bank.applied_transfers()[0].initiator == "alice"  # paid, nothing back
    assert len(world.bank.applied) == 1


async def test_a_refused_refund_is_a_409_and_the_order_stays_confirmed(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, world: World
) -> None:
    order = await place(client, as_user, world, "o-1")
    world.bank.accounts[world.shop].balance = 100  # the shop cannot pay 500 back
    support = as_user("sam", "support")
    response = await client.post(refund_url(order["id"]), headers=support)
    assert (response.status_code, response.headers["content-type"]) == (409, PROBLEM)
    problem = response.json()
    assert (problem["type"].rsplit("/", 1)[-1], problem["refusal"]) == (
        "refund-refused", "insufficient-funds",
    )  # fmt: skip
    read = (await client.get(f"{ORDERS}/{order['id']}", headers=support)).json()
    assert (read["state"], read["refund_refusal"], read["refund_transfer_id"]) == (
        "CONFIRMED", "insufficient-funds", None,
    )  # fmt: skip
    assert [e.type for e in await events_in(app)] == ["flotilla.orders.order_confirmed"]
    # Once the shop's account can pay, asking again refunds (with the next key).
    world.bank.accounts[world.shop].balance = 500
    response = await client.post(refund_url(order["id"]), headers=support)
    assert (response.status_code, response.json()["state"]) == (202, "REFUNDED")
    assert [key for _, key in world.bank.calls if ":refund:" in key] == [
        f"order:{order['id']}:refund:1", f"order:{order['id']}:refund:2",
    ]  # fmt: skip
    assert world.bank.balance(world.wallet) == 10_000


CRASHES = [FaultPoint.AFTER_REFUNDING_RECORDED, FaultPoint.AFTER_REFUND_CALL,
           FaultPoint.AFTER_FINAL_RECORDED]  # fmt: skip


@pytest.mark.parametrize("point", CRASHES, ids=[p.value for p in CRASHES])
async def test_a_refund_that_died_on_the_way_is_finished_once_by_recovery(
    make_app: AppFactory, as_user: Headers, world: World, point: FaultPoint
) -> None:
    async with make_app() as healthy, client_of(healthy) as client:
        order = await place(client, as_user, world, "o-1")
    faults = CrashAt(point)
    async with make_app(faults=faults) as dying, client_of(dying) as client:
        with pytest.raises(SimulatedCrash):
            await client.post(refund_url(order["id"]), headers=as_user("sam", "support"))
        assert faults.crashed
    # The same instance id again, on the same database: what it held is its own.
    async with make_app() as restarted:
        report = await restarted.state.recovery.tick()
        assert report.unfinished == 0
        async with client_of(restarted) as client:
            read = await client.get(f"{ORDERS}/{order['id']}", headers=as_user())
            again = await client.post(refund_url(order["id"]), headers=as_user("sam", "support"))
        events = await events_in(restarted)
    assert read.json()["state"] == again.json()["state"] == "REFUNDED"
    _, back = world.bank.applied_transfers()  # the payment and exactly one refund
    assert read.json()["refund_transfer_id"] == back.id
    assert world.bank.balance(world.wallet) == 10_000
    assert [e.type for e in events] == [
        "flotilla.orders.order_confirmed", "flotilla.orders.order_refunded",
    ]  # fmt: skip
    assert events[1].data["refund_transfer_id"] == back.id
