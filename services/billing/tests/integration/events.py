"""Helpers of the event tests: orders' events published as its relay would, a consumer
run as a task, metrics that can be waited on."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from flotilla_kit.events import (
    CloudEvent,
    Consumer,
    DeadLetter,
    EventMetrics,
    Outcome,
    connect,
    ensure_streams,
    read_dead_letters,
)


class WatchedMetrics(EventMetrics):
    """The real metrics, and a way to wait until they say something (bounded)."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[Outcome] = []
        self._changed = asyncio.Event()

    def consumed_one(self, consumer: str, outcome: Outcome) -> None:
        super().consumed_one(consumer, outcome)
        self.outcomes.append(outcome)
        self._changed.set()

    def count(self, outcome: Outcome) -> int:
        return self.outcomes.count(outcome)

    async def until(
        self, condition: Callable[[WatchedMetrics], bool], timeout_s: float = 30
    ) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition(self):
                self._changed.clear()
                await self._changed.wait()


def order_event(name: str, data: dict[str, Any], *, event_id: str | None = None) -> CloudEvent:
    event = CloudEvent.new("orders", name, data, subject=str(data.get("order_id", "x")))
    if event_id is not None:
        event = CloudEvent(
            event_id, event.source, event.type, event.time, event.data, event.subject
        )
    return event


async def publish(
    nats_url: str, subject: str, payload: bytes, *, message_id: str | None = None
) -> None:
    """Onto the events stream as a relay would (`Nats-Msg-Id`; a new one by default, so
    JetStream's own duplicate window does not hide a copy from the inbox)."""
    client = await connect(nats_url, name="test-orders", persistent=False)
    try:
        js = client.jetstream()
        await ensure_streams(js)
        await js.publish(subject, payload, headers={"Nats-Msg-Id": message_id or str(uuid.uuid4())})
    finally:
        await client.close()


async def publish_event(nats_url: str, event: CloudEvent) -> None:
    await publish(nats_url, event.type, event.to_json())


async def dead_letters(nats_url: str) -> list[DeadLetter]:
    client = await connect(nats_url, name="test-dlq", persistent=False)
    try:
        return await read_dead_letters(client.jetstream())
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def running(consumer: Consumer) -> AsyncIterator[None]:
    task = asyncio.create_task(consumer.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled() and task.exception() is not None:
            raise AssertionError("the consumer died") from task.exception()
