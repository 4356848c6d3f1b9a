"""The broker restarted mid-stream: a relay and a consumer keep running while NATS is
stopped (or killed) and started again on the same port and store; events keep being
written meanwhile. Nothing is lost and nothing is applied twice."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flotilla_kit.db import Database
from flotilla_kit.devservers import EmbeddedNats
from flotilla_kit.events import Consumer, OutboxRelay, Outcome
from libs.kit.tests.integration.events_world import (
    WatchedMetrics,
    applied_counts,
    count_of,
    inbox,
    outbox,
    produce,
    recording_handler,
    running,
    service_database,
    stream_messages,
    unpublished,
)

NAME = "shop-books"


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    async with service_database(database_url) as db:
        yield db


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_nothing_is_lost_or_applied_twice_across_a_broker_restart(
    database: Database, fresh_nats: EmbeddedNats, how: str
) -> None:
    metrics = WatchedMetrics()
    relay = OutboxRelay(
        database=database, outbox=outbox, nats_url=fresh_nats.url, service="shop",
        metrics=metrics, poll_interval_s=0.05, retry_initial_s=0.05, retry_max_s=0.5,
        publish_timeout_s=0.5,
    )  # fmt: skip
    consumer = Consumer(
        database=database, inbox=inbox, nats_url=fresh_nats.url, name=NAME,
        subjects=["flotilla.shop.>"], handler=recording_handler(NAME), metrics=metrics,
        fetch_timeout_s=0.5, reconnect_s=0.1,
    )  # fmt: skip
    written = []
    async with running(relay, consumer):
        written += await produce(database, range(10))
        await metrics.until(lambda m: m.count(Outcome.APPLIED) >= 5)

        # Mid-stream: some applied, maybe some published but not consumed yet.
        if how == "stop":
            fresh_nats.stop()
        else:
            fresh_nats.kill()
        written += await produce(database, range(10, 20))  # written while the broker is away
        await metrics.until(lambda m: m.publish_failures >= 2)  # the relay tried, and waits
        written += await produce(database, range(20, 30))
        assert await unpublished(database) >= 10  # kept, not dropped
        assert metrics.sample("flotilla_outbox_publish_errors_total", service="shop") >= 2

        fresh_nats.start()  # same port, same store
        await metrics.until(lambda m: m.count(Outcome.APPLIED) == 30, timeout_s=60)

    applied = await applied_counts(database)
    assert applied == {e.id: 1 for e in written}  # each exactly once, none lost
    assert await unpublished(database) == 0
    async with database.transaction(write=False) as tx:
        assert await tx.scalar(count_of(outbox)) == 30
        assert await tx.scalar(count_of(inbox)) == 30
    stored = await stream_messages(fresh_nats.url)
    # Publishes retried across the outage reached the stream once each (JetStream dedupe).
    assert sorted(m.headers["Nats-Msg-Id"] for m in stored) == sorted(e.id for e in written)
    # The duplicates a killed broker may redeliver (acks it had not stored) went nowhere.
    assert metrics.count(Outcome.APPLIED) == 30
