"""`flotilla.payments.transfer_committed` end to end: a transfer committed through the API
(real database, fake ledger shards over gRPC with mutual TLS), the outbox relay, a real
NATS JetStream: exactly one event with the transfer's data; an aborted transfer
publishes nothing. And the `relay` command as a real process."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sys
from typing import Any

import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.js import api
from nats.js.errors import NotFoundError
from sqlalchemy import func, select

from flotilla_kit.db import Query
from flotilla_kit.devservers import free_port
from flotilla_kit.events import EVENTS_STREAM, CloudEvent, OutboxRelay
from flotilla_payments.adapters.tables import outbox
from services.payments.tests.integration.conftest import Headers
from services.payments.tests.integration.test_transfers_api import TRANSFERS, body

COMMITTED = "flotilla.payments.transfer_committed"


async def stored_events(url: str) -> list[tuple[str, dict[str, str], bytes]]:
    """(subject, headers, payload) of everything on FLOTILLA_EVENTS."""
    client = await nats.connect(url, allow_reconnect=False)
    try:
        js = client.jetstream()
        state = (await js.stream_info(EVENTS_STREAM)).state
        found = []
        for seq in range(max(state.first_seq, 1), state.last_seq + 1):
            message = await js.get_msg(EVENTS_STREAM, seq)
            found.append((message.subject or "", message.headers or {}, message.data or b""))
        return found
    finally:
        await client.close()


async def relay_once(app: FastAPI, url: str) -> int:
    relay = OutboxRelay(
        database=app.state.database, outbox=outbox, nats_url=url, service="payments"
    )
    try:
        published = await relay.publish_pending()
        assert await relay.publish_pending() == 0  # nothing is sent twice
        return published
    finally:
        await relay.close()


@pytest.mark.parametrize(("target", "path"), [("b1", "2pc"), ("b0", "local")])
async def test_a_committed_transfer_is_published_once_with_its_data(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    nats_url: str,
    target: str,
    path: str,
) -> None:
    response = await client.post(
        TRANSFERS,
        json=body(accounts["a0"], accounts[target], 2_500, reference="rent"),
        headers=as_user("alice", key="t-1"),
    )
    assert response.status_code == 201, response.text
    transfer = response.json()
    assert await relay_once(app, nats_url) == 1

    ((subject, headers, payload),) = await stored_events(nats_url)
    event = CloudEvent.from_json(payload, arrived_on=subject)
    assert subject == f"{COMMITTED}.direct"  # alice asked herself (a service: its name)
    assert headers["Nats-Msg-Id"] == event.id
    assert (event.source, event.subject) == ("/flotilla/payments", transfer["id"])
    committed_at: Any = event.data.pop("committed_at")
    assert event.data == {
        "transfer_id": transfer["id"],
        "from_account": accounts["a0"],
        "to_account": accounts[target],
        "amount_minor": 2_500,
        "currency": "EUR",
        "reference": "rent",
        "initiator": "alice",
        "requested_by": None,
        "path": path,
    }
    assert dt.datetime.fromisoformat(committed_at) == dt.datetime.fromisoformat(
        transfer["completed_at"]
    )


@pytest.mark.parametrize("target", ["b1", "b0"])
async def test_an_aborted_transfer_publishes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    nats_url: str,
    target: str,
) -> None:
    response = await client.post(
        TRANSFERS,
        json=body(accounts["a0"], accounts[target], 10_001),
        headers=as_user("alice", key="t-1"),
    )
    assert response.status_code == 422, response.text
    assert response.json()["transfer_id"]  # it was written, and aborted
    assert await relay_once(app, nats_url) == 0
    assert await stored_events(nats_url) == []
    async with app.state.database.transaction(write=False) as tx:
        assert await tx.scalar(Query(select(func.count().label("n")).select_from(outbox))) == 0


async def test_the_relay_command_publishes_and_stops_on_sigterm(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    database_url: str,
    nats_url: str,
) -> None:
    response = await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b1"]), headers=as_user(key="t-1")
    )
    assert response.status_code == 201, response.text

    watcher = await nats.connect(nats_url, allow_reconnect=False)
    env = {
        **os.environ,
        "FLOTILLA_DATABASE_URL": database_url,
        "FLOTILLA_NATS_URL": nats_url,
        "FLOTILLA_PROFILE": "test",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flotilla_payments", "relay", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        js = watcher.jetstream()
        async with asyncio.timeout(30):
            while True:  # the relay process creates the stream when it starts
                try:
                    subscription = await js.subscribe(
                        f"{COMMITTED}.>", stream=EVENTS_STREAM, ordered_consumer=True,
                        deliver_policy=api.DeliverPolicy.ALL,
                    )  # fmt: skip
                    break
                except NotFoundError:
                    await asyncio.sleep(0.05)  # another process's state, within the bound
            message = await subscription.next_msg(timeout=30)
        event = CloudEvent.from_json(message.data, arrived_on=message.subject)
        assert event.subject == response.json()["id"]
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        assert b"outbox relay stopped" in out
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await watcher.close()
    async with app.state.database.transaction(write=False) as tx:
        waiting = await tx.scalar(
            Query(
                select(func.count().label("n"))
                .select_from(outbox)
                .where(outbox.c.published_at.is_(None))
            )
        )
    assert waiting == 0


async def test_the_relay_command_waits_for_a_broker_that_is_down_and_says_so(
    database_url: str,
) -> None:
    env = {
        **os.environ,
        "FLOTILLA_DATABASE_URL": database_url,
        "FLOTILLA_NATS_URL": f"nats://127.0.0.1:{free_port()}",  # nobody listens
        "FLOTILLA_PROFILE": "test",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flotilla_payments", "relay", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(30):
            while not any(line["message"] == "cannot reach nats; retrying" for line in lines):
                raw = await process.stdout.readline()
                assert raw, "the relay exited"
                lines.append(json.loads(raw))  # ECS JSON, every line
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest, err = await process.communicate()
        assert process.returncode == 0, err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines += [json.loads(raw) for raw in rest.splitlines()]
    messages = [line["message"] for line in lines]
    assert "outbox relay started" in messages
    assert messages[-1] == "outbox relay stopped"
    warning = next(line for line in lines if line["message"] == "cannot reach nats; retrying")
    assert warning["log.level"] == "warning"
    assert warning["service"]["name"] == "payments"
