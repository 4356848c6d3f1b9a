"""Events over a real NATS JetStream: the final state's event is in the outbox with it,
the relay publishes it (also as its own process), and the order history, built only from
events, shows each order and its payment state, whatever the order of arrival and
however many copies arrive.

The history is read from an instance on a database of its own, whose orders table stays
empty: what it shows can only have come from the events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from flotilla_kit.db import Query
from flotilla_kit.events import CloudEvent, OutboxRelay, connect, ensure_streams, nats_subject
from flotilla_orders.adapters.tables import history_orders, inbox, orders, outbox
from flotilla_orders.entrypoints.consumers import ORDERS_CONSUMER, PAYMENTS_CONSUMER
from services.orders.tests.fakes import expire_the_hold_while_paying
from services.orders.tests.integration.conftest import (
    ORDERS,
    AppFactory,
    Headers,
    World,
    client_of,
    order_body,
)

HISTORY = "/api/v1/order-history"
T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], *, within_s: float = 20.0) -> T:
    """Poll state that another process (the broker) moves, up to a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        found = await check()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {within_s} s")
        await asyncio.sleep(0.05)


async def publish_pending(app: FastAPI, nats_url: str) -> int:
    relay = OutboxRelay(
        database=app.state.database, outbox=outbox, nats_url=nats_url, service="orders"
    )
    try:
        return await relay.publish_pending()
    finally:
        await relay.close()


async def publish_as_payments(
    nats_url: str, transfer_id: str, amount: int, *, event_id: str | None = None,
    message_id: str | None = None, route: str = "orders",
) -> CloudEvent:  # fmt: skip
    """A `transfer_committed` event, as the payments service's relay would publish it (a
    transfer the orders service asked for, unless `route` says otherwise)."""
    event = CloudEvent.new(
        "payments",
        "transfer_committed",
        {
            "transfer_id": transfer_id, "from_account": "acc_1_x", "to_account": "acc_0_y",
            "amount_minor": amount, "currency": "EUR", "reference": "order",
            "initiator": "alice", "path": "2pc", "committed_at": "2030-01-01T12:00:00Z",
        },
        subject=transfer_id,
    )  # fmt: skip
    if event_id is not None:
        event = CloudEvent(
            event_id, event.source, event.type, event.time, event.data, event.subject
        )
    client = await connect(nats_url, name="test-payments", persistent=False)
    try:
        js = client.jetstream()
        await ensure_streams(js)
        await js.publish(
            nats_subject(event.type, route),
            event.to_json(),
            headers={"Nats-Msg-Id": message_id or event.id},
        )
    finally:
        await client.close()
    return event


@pytest.fixture
async def reader(make_app: AppFactory, nats_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """An instance that only reads: its own (SQLite) database, its history consumers on."""
    async with make_app(
        instance_id="o-reader",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'reader.db'}",
        history_consumers=True,
        nats_url=nats_url,
    ) as app:
        yield app


async def history_of(app: FastAPI, headers: dict[str, str]) -> list[dict[str, Any]]:
    async with client_of(app) as client:
        response = await client.get(HISTORY, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def count(app: FastAPI, table: Any, *where: Any) -> int:
    query = Query(select(func.count().label("n")).select_from(table).where(*where))
    async with app.state.database.transaction(write=False) as tx:
        return int(await tx.scalar(query))


async def test_a_confirmed_order_reaches_the_history_and_is_paid_once_payments_says_so(
    make_app: AppFactory, reader: FastAPI, as_user: Headers, world: World, nats_url: str
) -> None:
    async with make_app(nats_url=nats_url) as shop, client_of(shop) as client:
        placed = (
            await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
        ).json()
        # The event was written with the final state, and waits in the outbox.
        async with shop.state.database.transaction(write=False) as tx:
            (row,) = await tx.all(Query(select(outbox)))
        event = CloudEvent.from_json(row.payload.encode())
        assert (event.type, event.subject, row.published_at) == (
            "flotilla.orders.order_confirmed", placed["id"], None,
        )  # fmt: skip
        assert event.data["payment_transfer_id"] == placed["payment_transfer_id"]
        assert event.data["lines"][0] == {
            "product_id": "apple",
            "quantity": 2,
            "unit_price_minor": 150,
        }
        assert await publish_pending(shop, nats_url) == 1
        assert await count(shop, outbox, outbox.c.published_at.is_(None)) == 0

    alice = as_user()

    async def shown(state: str) -> list[dict[str, Any]] | None:
        entries = await history_of(reader, alice)
        return entries if entries and entries[0]["payment_state"] == state else None

    (entry,) = await eventually(lambda: shown("unpaid"))
    assert {k: entry[k] for k in ("order_id", "state", "total_minor", "currency", "reason")} == {
        "order_id": placed["id"], "state": "CONFIRMED", "total_minor": 500,
        "currency": "EUR", "reason": None,
    }  # fmt: skip
    await publish_as_payments(nats_url, placed["payment_transfer_id"], 500)
    (entry,) = await eventually(lambda: shown("paid"))
    assert entry["payment_transfer_id"] == placed["payment_transfer_id"]
    assert await history_of(reader, as_user("bob")) == []  # the customer's own only
    # Built only from events: the reader never stored an order of its own.
    assert await count(reader, orders) == 0


async def test_events_in_any_order_and_copies_of_them_give_the_same_history(
    make_app: AppFactory, reader: FastAPI, as_user: Headers, world: World, nats_url: str
) -> None:
    expire_the_hold_while_paying(
        world.bank, world.stock
    )  # the order is paid, then refunded and cancelled
    async with make_app(nats_url=nats_url) as shop, client_of(shop) as client:
        placed = (
            await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
        ).json()
        assert (placed["state"], placed["reason"]) == ("CANCELLED", "reservation-expired")
        refund = placed["refund_transfer_id"]
        # The refund's news comes first, twice (the second under its own message id, so
        # JetStream keeps it and only the inbox can drop it), then the order's, twice.
        # A transfer someone else asked for: the broker keeps it from orders' consumer.
        await publish_as_payments(nats_url, "another-transfer", 900, route="direct")
        first = await publish_as_payments(nats_url, refund, 500)
        await publish_as_payments(nats_url, refund, 500, event_id=first.id, message_id="again")
        assert await publish_pending(shop, nats_url) == 1
        async with shop.state.database.transaction() as tx:
            await tx.execute(Query(outbox.update().values(published_at=None)))
            await tx.commit()
        assert await publish_pending(shop, nats_url) == 1  # JetStream drops this copy

    async def refunded() -> list[dict[str, Any]] | None:
        entries = await history_of(reader, as_user())
        return entries if entries and entries[0]["payment_state"] == "refunded" else None

    (entry,) = await eventually(refunded)
    assert (entry["state"], entry["reason"], entry["refund_transfer_id"]) == (
        "CANCELLED", "reservation-expired", refund,
    )  # fmt: skip

    async def consumed(name: str, outcome: str) -> bool:
        async with client_of(reader) as client:
            text = (await client.get("/metrics")).text
        line = f'flotilla_events_consumed_total{{consumer="{name}",outcome="{outcome}"}} 1.0'
        return line in text

    await eventually(lambda: consumed(PAYMENTS_CONSUMER, "duplicate"))
    assert await consumed(PAYMENTS_CONSUMER, "applied")
    assert await consumed(ORDERS_CONSUMER, "applied")
    assert await count(reader, inbox) == 2
    assert await count(reader, history_orders) == 1


async def test_the_relay_command_publishes_the_outbox(
    make_app: AppFactory, as_user: Headers, world: World, nats_url: str, database_url: str
) -> None:
    async with make_app(nats_url=nats_url) as shop, client_of(shop) as client:
        placed = await client.post(
            ORDERS, json=order_body(world, ("apple", 11)), headers=as_user(key="o-1")
        )
        assert (placed.status_code, placed.json()["reason"]) == (202, "out-of-stock")
        env = {
            **os.environ, "FLOTILLA_DATABASE_URL": database_url, "FLOTILLA_NATS_URL": nats_url,
            "FLOTILLA_PROFILE": "test", "FLOTILLA_LOG_LEVEL": "warning",
        }  # fmt: skip
        relay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flotilla_orders", "relay", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:

            async def published() -> bool:
                return await count(shop, outbox, outbox.c.published_at.is_not(None)) == 1

            await eventually(published)
        finally:
            relay.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(relay.communicate(), 30)
        assert relay.returncode == 0, err.decode()
    client_ = await connect(nats_url, name="test-reader", persistent=False)
    try:
        message = await client_.jetstream().get_last_msg(
            "FLOTILLA_EVENTS", "flotilla.orders.order_cancelled"
        )
    finally:
        await client_.close()
    assert message.data is not None
    event = json.loads(message.data)
    assert (event["subject"], event["data"]["reason"]) == (placed.json()["id"], "out-of-stock")


async def test_a_refunded_order_is_refunded_in_the_history_and_unknown_events_are_skipped(
    make_app: AppFactory, reader: FastAPI, as_user: Headers, world: World, nats_url: str
) -> None:
    async with make_app(nats_url=nats_url) as shop, client_of(shop) as client:
        placed = (
            await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
        ).json()
        refund_url = f"{ORDERS}/{placed['id']}/refund"
        refunded = (await client.post(refund_url, headers=as_user("sam", "support"))).json()
        assert refunded["state"] == "REFUNDED"
        assert await publish_pending(shop, nats_url) == 2
    # An orders event of a type this version does not know (a newer instance's): the
    # history stores nothing for it and acknowledges it; it is not dead-lettered.
    unknown = CloudEvent.new(
        "orders", "order_shipped", {"order_id": placed["id"]}, subject=placed["id"]
    )
    client_ = await connect(nats_url, name="test-orders", persistent=False)
    try:
        js = client_.jetstream()
        await ensure_streams(js)
        await js.publish(
            nats_subject(unknown.type), unknown.to_json(), headers={"Nats-Msg-Id": unknown.id}
        )
    finally:
        await client_.close()
    await publish_as_payments(nats_url, placed["payment_transfer_id"], 500)
    await publish_as_payments(nats_url, refunded["refund_transfer_id"], 500)

    async def shown() -> list[dict[str, Any]] | None:
        entries = await history_of(reader, as_user())
        return entries if entries and entries[0]["payment_state"] == "refunded" else None

    (entry,) = await eventually(shown)
    assert {k: entry[k] for k in ("order_id", "state", "reason", "total_minor")} == {
        "order_id": placed["id"], "state": "REFUNDED", "reason": None, "total_minor": 500,
    }  # fmt: skip
    assert (entry["payment_transfer_id"], entry["refund_transfer_id"]) == (
        placed["payment_transfer_id"], refunded["refund_transfer_id"],
    )  # fmt: skip

    async def consumed() -> str | None:
        async with client_of(reader) as client:
            text = (await client.get("/metrics")).text
        line = f'flotilla_events_consumed_total{{consumer="{ORDERS_CONSUMER}",outcome="applied"}}'
        return text if f"{line} 3.0" in text else None

    metrics = await eventually(consumed)  # confirmed, refunded, and the unknown one
    assert 'outcome="dead_lettered"' not in metrics
    assert 'outcome="retried"' not in metrics
    assert await count(reader, inbox, inbox.c.consumer == ORDERS_CONSUMER) == 3
    assert await count(reader, history_orders) == 1
