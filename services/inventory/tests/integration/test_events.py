"""Stock events for real: written to the outbox with every stock change, and published
to a real NATS JetStream by `python -m flotilla_inventory relay` (its own process), in
order, as CloudEvents. SQLite only here: the outbox on PostgreSQL is the kit's, tested
there, and the other integration tests read this service's outbox on both backends."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import nats
from nats.js.errors import NotFoundError

from flotilla_kit.events import EVENTS_STREAM, CloudEvent
from flotilla_kit.testing import TokenMinter

from .harness import running_inventory


async def _published(url: str) -> list[tuple[str, dict[str, str], bytes]]:
    """(subject, headers, data) of every message on the events stream, in order."""
    client = await nats.connect(url, allow_reconnect=False)
    try:
        js = client.jetstream()
        try:
            state = (await js.stream_info(EVENTS_STREAM)).state
        except NotFoundError:
            return []
        messages = []
        for seq in range(max(state.first_seq, 1), state.last_seq + 1):
            message = await js.get_msg(EVENTS_STREAM, seq)
            messages.append((message.subject or "", message.headers or {}, message.data or b""))
        return messages
    finally:
        await client.close()


async def test_the_relay_publishes_every_stock_change_in_order(
    sqlite_url: str, tokens: TokenMinter, nats_url: str
) -> None:
    async with running_inventory(sqlite_url, tokens=tokens) as instance:
        mug = await instance.product(on_hand=5)
        await instance.reserve_rest("ord-1", (mug, 2))
        await instance.reserve_rest("ord-2", (mug, 9))  # refused: no event
        await instance.http.post(
            "/internal/v1/reservations/ord-1/commit", headers=instance.orders()
        )
        await instance.http.post(
            f"/api/v1/products/{mug}/stock-adjustments",
            json={"delta": 4, "reason": "delivery"},
            headers=instance.admin(),
        )
    relay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flotilla_inventory", "relay",
        env={**os.environ, "FLOTILLA_DATABASE_URL": sqlite_url, "FLOTILLA_NATS_URL": nats_url},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        # Another process's work: poll the stream, with a deadline.
        deadline = time.monotonic() + 30
        while len(messages := await _published(nats_url)) < 4:
            assert relay.returncode is None, "the relay exited"
            assert time.monotonic() < deadline, f"only {len(messages)} published"
            await asyncio.sleep(0.1)
    finally:
        relay.send_signal(signal.SIGTERM)
        stdout, _ = await asyncio.wait_for(relay.communicate(), 30)
    assert relay.returncode == 0, stdout.decode()
    events = [CloudEvent.from_json(data, arrived_on=subject) for subject, _, data in messages]
    assert [headers["Nats-Msg-Id"] for _, headers, _ in messages] == [e.id for e in events]
    assert {e.type for e in events} == {"flotilla.inventory.stock_changed"}
    assert {e.source for e in events} == {"/flotilla/inventory"}
    assert {e.subject for e in events} == {mug}
    assert [
        (e.data["reason"], e.data["on_hand"], e.data["reserved"], e.data["available"],
         e.data["version"]) for e in events
    ] == [
        ("created", 5, 0, 5, 1),
        ("reserved", 5, 2, 3, 2),
        ("committed", 3, 0, 3, 3),
        ("adjusted", 7, 0, 7, 4),
    ]  # fmt: skip
