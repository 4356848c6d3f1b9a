"""The outbox relay against a real NATS JetStream, on SQLite and on PostgreSQL: what it
publishes, in which order, what a crash between publishing and marking does, and its
loop."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import bindparam, select, update

from flotilla_kit.db import Database, Query
from flotilla_kit.devservers import free_port
from flotilla_kit.events import (
    EVENTS_STREAM,
    CloudEvent,
    Consumer,
    EventMetrics,
    OutboxRelay,
    Outcome,
    watch_backlog,
)
from libs.kit.tests.integration.events_world import (
    WatchedMetrics,
    applied_counts,
    inbox,
    outbox,
    produce,
    raw_publisher,
    recording_handler,
    running,
    service_database,
    stream_messages,
    unpublished,
)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    async with service_database(database_url) as db:
        yield db


def relay_of(
    database: Database,
    url: str,
    *,
    metrics: EventMetrics | None = None,
    batch_size: int = 100,
    poll_interval_s: float = 0.2,
    after_publish: Callable[[str], None] | None = None,
) -> OutboxRelay:
    return OutboxRelay(
        database=database, outbox=outbox, nats_url=url, service="shop", metrics=metrics,
        batch_size=batch_size, poll_interval_s=poll_interval_s, after_publish=after_publish,
    )  # fmt: skip


async def test_committed_events_are_published_in_seq_order_and_rolled_back_ones_never(
    database: Database, nats_url: str
) -> None:
    first = await produce(database, range(3))
    await produce(database, [99], commit=False)  # rolled back: nothing to publish
    second = await produce(database, range(3, 5))
    metrics = WatchedMetrics()
    relay = relay_of(database, nats_url, metrics=metrics, batch_size=2)  # three batches
    try:
        assert await relay.publish_pending() == 5
        assert await relay.publish_pending() == 0  # nothing twice
    finally:
        await relay.close()

    messages = await stream_messages(nats_url)
    expected = first + second
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [e.id for e in expected]
    assert [m.subject for m in messages] == ["flotilla.shop.thing_done"] * 5
    assert [CloudEvent.from_json(m.data, arrived_on=m.subject) for m in messages] == expected
    assert [json.loads(m.data)["data"]["n"] for m in messages] == [0, 1, 2, 3, 4]
    assert await unpublished(database) == 0
    assert metrics.sample("flotilla_outbox_published_total", service="shop") == 5
    assert metrics.sample("flotilla_outbox_backlog", service="shop") == 0


async def test_the_backlog_counts_what_is_still_waiting(database: Database, nats_url: str) -> None:
    await produce(database, range(4))
    metrics = WatchedMetrics()
    relay = relay_of(database, nats_url, metrics=metrics, batch_size=3)
    relay.stop()  # a stopping relay finishes the batch it is in, and no more
    try:
        assert await relay.publish_pending() == 3
        assert metrics.sample("flotilla_outbox_backlog", service="shop") == 1
    finally:
        await relay.close()


async def test_a_serving_instance_reports_the_backlog_the_relay_has_not_published(
    database: Database,
) -> None:
    """The relay serves no /metrics; the producer's serving instances count for it."""
    metrics = WatchedMetrics()
    await produce(database, range(3))
    watch = asyncio.create_task(
        watch_backlog(database, outbox, service="shop", metrics=metrics, interval_s=0.01)
    )
    try:
        await metrics.until(lambda m: m.sample("flotilla_outbox_backlog", service="shop") == 3)
        await produce(database, range(3, 5))
        await metrics.until(lambda m: m.sample("flotilla_outbox_backlog", service="shop") == 5)
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch


class SimulatedCrash(BaseException):
    """The relay 'dies' here: nothing after this point runs."""


async def test_a_relay_dying_between_publish_and_mark_republishes_and_it_is_applied_once(
    database: Database, nats_url: str
) -> None:
    events = await produce(database, range(4))
    victim = events[1]

    def crash_after_publishing_the_second(event_id: str) -> None:
        if event_id == victim.id:
            raise SimulatedCrash(event_id)

    crashing = relay_of(database, nats_url, after_publish=crash_after_publishing_the_second)
    try:
        with pytest.raises(SimulatedCrash):
            await crashing.publish_pending()
    finally:
        await crashing.close()
    # The batch went out together: all of it is on the stream, but only the row
    # acknowledged before the crash is marked; the restarted relay sends the rest again.
    assert [m.headers["Nats-Msg-Id"] for m in await stream_messages(nats_url)] == [
        e.id for e in events
    ]
    async with database.transaction(write=False) as tx:
        marked = await tx.all(
            Query(select(outbox.c.event_id).where(outbox.c.published_at.is_not(None)))
        )
    assert [row.event_id for row in marked] == [events[0].id]

    restarted = relay_of(database, nats_url)
    try:
        assert await restarted.publish_pending() == 3  # the victim again, and the other two
    finally:
        await restarted.close()
    # JetStream dropped the copy (same Nats-Msg-Id within its duplicate window).
    stored = await stream_messages(nats_url)
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [e.id for e in events]

    metrics = WatchedMetrics()
    consumer = Consumer(
        database=database, inbox=inbox, nats_url=nats_url, name="shop-books",
        subjects=["flotilla.shop.>"], handler=recording_handler("shop-books"), metrics=metrics,
    )  # fmt: skip
    async with running(consumer):
        await metrics.until(lambda m: m.count(Outcome.APPLIED) == 4)
        # Past the duplicate window (or a copy sent under another id), the inbox is the
        # second guard: the same event again has no effect.
        async with raw_publisher(nats_url) as client:
            await client.jetstream().publish(victim.type, victim.to_json(), stream=EVENTS_STREAM)
        await metrics.until(lambda m: m.count(Outcome.DUPLICATE) == 1)
    assert await applied_counts(database) == {e.id: 1 for e in events}
    assert metrics.sample(
        "flotilla_events_consumed_total", consumer="shop-books", outcome="duplicate"
    ) == 1  # fmt: skip


async def test_run_publishes_what_is_written_while_it_runs_and_stops_on_request(
    database: Database, nats_url: str
) -> None:
    metrics = WatchedMetrics()
    relay = relay_of(database, nats_url, metrics=metrics, poll_interval_s=0.05)
    task = asyncio.create_task(relay.run())
    try:
        written = await produce(database, range(3))
        await metrics.until(lambda m: m.published_total == 3)
        written += await produce(database, range(3, 5))
        await metrics.until(lambda m: m.published_total == 5)
        relay.stop()
        async with asyncio.timeout(10):
            await task  # returns by itself after stop()
    finally:
        task.cancel()
    assert [m.headers["Nats-Msg-Id"] for m in await stream_messages(nats_url)] == [
        e.id for e in written
    ]


async def test_a_relay_waiting_for_a_broker_that_is_down_still_stops(
    database: Database, nats_url: str
) -> None:
    relay = relay_of(database, f"nats://127.0.0.1:{free_port()}")  # nobody listens
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(0)  # let it start connecting
    relay.stop()
    async with asyncio.timeout(10):
        await task


async def test_published_rows_are_pruned_after_the_retention(
    database: Database, nats_url: str
) -> None:
    events = await produce(database, range(3))
    relay = relay_of(database, nats_url)
    try:
        await relay.publish_pending()
        old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        async with database.transaction() as tx:
            await tx.execute(
                Query(
                    update(outbox)
                    .where(outbox.c.event_id == events[0].id)
                    .values(published_at=bindparam("at"))
                ),
                at=old,
            )
            await tx.commit()
        fresh = await produce(database, [3])  # not published yet: never pruned
        assert await relay.prune_published(older_than_s=3600) == 1
    finally:
        await relay.close()
    async with database.transaction(write=False) as tx:
        rows = await tx.all(Query(select(outbox.c.event_id).order_by(outbox.c.seq)))
    left = [r.event_id for r in rows]
    assert left == [events[1].id, events[2].id, fresh[0].id]
