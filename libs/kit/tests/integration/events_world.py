"""What the event tests share: a small service schema (outbox, inbox, and an `effects`
table the handlers write, without a unique key, so an event applied twice shows as two
rows), producing events in real transactions, reading the real streams, and metrics a
test can wait on instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, func, select

from flotilla_kit.db import NAMING_CONVENTION, Database, Query, Transaction
from flotilla_kit.events import (
    DLQ_STREAM,
    EVENTS_STREAM,
    CloudEvent,
    EventMetrics,
    Handler,
    Outbox,
    Outcome,
    inbox_table,
    outbox_table,
)
from flotilla_kit.testing import database_with_tables

metadata = MetaData(naming_convention=NAMING_CONVENTION)
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
effects = Table(
    "effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("consumer", String(64), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("n", Integer, nullable=False),
)
RECORD_EFFECT = Query(
    effects.insert().values(
        consumer=bindparam("consumer"), event_id=bindparam("event_id"), n=bindparam("n")
    )
)
APPLIED = Query(select(effects.c.event_id))
UNPUBLISHED = Query(
    select(func.count().label("n")).select_from(outbox).where(outbox.c.published_at.is_(None))
)


def count_of(table: Table) -> Query:
    return Query(select(func.count().label("n")).select_from(table))


def service_database(url: str) -> contextlib.AbstractAsyncContextManager[Database]:
    return database_with_tables(url, metadata)


async def produce(
    database: Database, numbers: range | list[int], *, commit: bool = True
) -> list[CloudEvent]:
    """One transaction writing one outbox event per number (`flotilla.shop.thing_done`)."""
    written = [
        CloudEvent.new("shop", "thing_done", {"n": n}, subject=f"thing-{n}") for n in numbers
    ]
    box = Outbox(outbox)
    async with database.transaction() as transaction:
        for event in written:
            await box.add(transaction, event)
        if commit:
            await transaction.commit()
    return written if commit else []


def recording_handler(consumer: str) -> Handler:
    """Writes one `effects` row per application, in the consumer's transaction."""

    async def handle(event: CloudEvent, transaction: Transaction) -> None:
        await transaction.execute(
            RECORD_EFFECT, consumer=consumer, event_id=event.id, n=int(event.data["n"])
        )

    return handle


async def applied_counts(database: Database) -> Counter[str]:
    """How often each event id was applied (1 each, if exactly once)."""
    async with database.transaction(write=False) as transaction:
        rows = await transaction.all(APPLIED)
    return Counter(row.event_id for row in rows)


async def unpublished(database: Database) -> int:
    async with database.transaction(write=False) as transaction:
        count = await transaction.scalar(UNPUBLISHED)
    return int(count or 0)


@dataclass(frozen=True)
class StoredMessage:
    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


async def stream_messages(url: str, stream: str = EVENTS_STREAM) -> list[StoredMessage]:
    """Every message the stream holds, in order (empty if it does not exist)."""
    client = await nats.connect(url, allow_reconnect=False)
    try:
        js = client.jetstream()
        try:
            state = (await js.stream_info(stream)).state
        except NotFoundError:
            return []
        found = []
        for seq in range(max(state.first_seq, 1), state.last_seq + 1):
            message = await js.get_msg(stream, seq)
            found.append(
                StoredMessage(
                    seq, message.subject or "", message.headers or {}, message.data or b""
                )
            )
        return found
    finally:
        await client.close()


async def dead_letters(url: str) -> list[StoredMessage]:
    return await stream_messages(url, DLQ_STREAM)


@contextlib.asynccontextmanager
async def raw_publisher(url: str) -> AsyncIterator[Client]:
    """A plain client, for what no relay would send (malformed payloads, copies)."""
    client = await nats.connect(url, allow_reconnect=False)
    try:
        yield client
    finally:
        await client.close()


class WatchedMetrics(EventMetrics):
    """The real metrics, and a way to wait until they say something (bounded)."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[tuple[str, Outcome]] = []
        self.published_total = 0
        self.publish_failures = 0
        self._changed = asyncio.Event()

    def consumed_one(self, consumer: str, outcome: Outcome) -> None:
        super().consumed_one(consumer, outcome)
        self.outcomes.append((consumer, outcome))
        self._changed.set()

    def published_some(self, service: str, count: int) -> None:
        super().published_some(service, count)
        self.published_total += count
        self._changed.set()

    def publish_failed(self, service: str) -> None:
        super().publish_failed(service)
        self.publish_failures += 1
        self._changed.set()

    def backlog_is(self, service: str, count: int) -> None:
        super().backlog_is(service, count)
        self._changed.set()

    def count(self, outcome: Outcome, consumer: str | None = None) -> int:
        return sum(1 for c, o in self.outcomes if o is outcome and consumer in (None, c))

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return value if value is not None else 0.0

    async def until(
        self, condition: Callable[[WatchedMetrics], bool], timeout_s: float = 30
    ) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition(self):
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running(*jobs: Any) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run consumers' / relays' `run()` as tasks; cancel them on the way out and surface
    an error any of them died of."""
    tasks = [
        asyncio.create_task(job.run(), name=f"{type(job).__name__}-{i}")
        for i, job in enumerate(jobs)
    ]
    try:
        yield tasks
    finally:
        died = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if died:  # a job that stopped early says why, even if the test then timed out
            raise AssertionError(f"{died[0].get_name()} died") from died[0].exception()
