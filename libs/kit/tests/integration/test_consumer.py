"""The inbox consumer against a real NATS JetStream, on SQLite and on PostgreSQL: retries,
dead letters (poison and malformed events), metrics per outcome, and two instances
sharing one durable consumer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from nats.js import api
from nats.js.errors import NotFoundError

from flotilla_kit.db import Database, Transaction
from flotilla_kit.events import (
    DEAD_REASON,
    DELIVERIES,
    EVENTS_STREAM,
    ORIGINAL_SUBJECT,
    CloudEvent,
    Consumer,
    Handler,
    MalformedEvent,
    OutboxRelay,
    Outcome,
    connect,
    ensure_streams,
    read_dead_letters,
)
from libs.kit.tests.integration.events_world import (
    WatchedMetrics,
    applied_counts,
    count_of,
    dead_letters,
    effects,
    inbox,
    outbox,
    produce,
    raw_publisher,
    recording_handler,
    running,
    service_database,
)

NAME = "shop-books"


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    async with service_database(database_url) as db:
        yield db


def consumer_of(
    database: Database,
    url: str,
    handler: Handler,
    metrics: WatchedMetrics,
    *,
    max_deliver: int = 3,
    fetch_timeout_s: float = 0.5,
) -> Consumer:
    return Consumer(
        database=database, inbox=inbox, nats_url=url, name=NAME, subjects=["flotilla.shop.>"],
        handler=handler, max_deliver=max_deliver, metrics=metrics,
        retry_initial_s=0.05, retry_max_s=0.2, fetch_timeout_s=fetch_timeout_s,
    )  # fmt: skip


async def publish(database: Database, url: str, numbers: range | list[int]) -> list[CloudEvent]:
    """Through the real path: outbox rows in a transaction, then the relay."""
    written = await produce(database, numbers)
    relay = OutboxRelay(database=database, outbox=outbox, nats_url=url, service="shop")
    try:
        assert await relay.publish_pending() == len(written)
    finally:
        await relay.close()
    return written


async def test_a_handler_that_fails_once_is_retried_and_applies_once(
    database: Database, nats_url: str
) -> None:
    record = recording_handler(NAME)
    failed: list[str] = []

    async def flaky(event: CloudEvent, transaction: Transaction) -> None:
        await record(event, transaction)  # rolled back with the failure below
        if event.data["n"] == 1 and not failed:
            failed.append(event.id)
            raise RuntimeError("the first attempt fails")

    metrics = WatchedMetrics()
    events = await publish(database, nats_url, range(3))
    async with running(consumer_of(database, nats_url, flaky, metrics)):
        await metrics.until(lambda m: m.count(Outcome.APPLIED) == 3)
    assert failed == [events[1].id]
    assert await applied_counts(database) == {e.id: 1 for e in events}
    assert metrics.count(Outcome.RETRIED) == 1
    assert metrics.sample("flotilla_events_consumed_total", consumer=NAME, outcome="retried") == 1
    assert metrics.sample("flotilla_events_consumed_total", consumer=NAME, outcome="applied") == 3
    async with database.transaction(write=False) as tx:
        inbox_rows = await tx.scalar(count_of(inbox))
    assert inbox_rows == 3
    assert await dead_letters(nats_url) == []


async def test_a_poison_event_is_dead_lettered_after_max_deliver_with_its_reason(
    database: Database, nats_url: str
) -> None:
    record = recording_handler(NAME)
    attempts: list[int] = []

    async def poisoned(event: CloudEvent, transaction: Transaction) -> None:
        await record(event, transaction)
        if event.data["n"] == 13:
            attempts.append(event.data["n"])
            raise ValueError("no such product")

    metrics = WatchedMetrics()
    events = await publish(database, nats_url, [12, 13, 14])
    async with running(consumer_of(database, nats_url, poisoned, metrics, max_deliver=3)):
        await metrics.until(
            lambda m: m.count(Outcome.DEAD_LETTERED) == 1 and m.count(Outcome.APPLIED) == 2
        )
    poison = events[1]
    assert len(attempts) == 3  # max_deliver deliveries, no more
    assert await applied_counts(database) == {events[0].id: 1, events[2].id: 1}  # no effect
    (letter,) = await dead_letters(nats_url)
    assert letter.subject == f"flotilla-dlq.{NAME}"
    assert letter.data == poison.to_json()  # the original payload, unchanged
    assert letter.headers[ORIGINAL_SUBJECT] == poison.type
    assert letter.headers[DELIVERIES] == "3"
    assert letter.headers[DEAD_REASON] == (
        "handler failed, delivery 3 of 3: ValueError: no such product"
    )
    assert metrics.count(Outcome.RETRIED) == 2
    assert metrics.sample(
        "flotilla_events_consumed_total", consumer=NAME, outcome="dead_lettered"
    ) == 1  # fmt: skip

    client = await connect(nats_url, name="test", persistent=False)
    try:
        (read,) = await read_dead_letters(client.jetstream())
    finally:
        await client.close()
    assert (read.consumer, read.event_id, read.event_type, read.deliveries) == (
        NAME, poison.id, poison.type, 3,
    )  # fmt: skip
    assert read.reason == letter.headers[DEAD_REASON]
    # Terminated, not pending: nothing is redelivered, nothing waits for an ack.
    client = await connect(nats_url, name="test", persistent=False)
    try:
        info = await client.jetstream().consumer_info(EVENTS_STREAM, NAME)
    finally:
        await client.close()
    assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0)


@pytest.mark.parametrize(
    ("payload", "subject", "reason"),
    [
        (b"{not json", "flotilla.shop.thing_done", "malformed: not JSON"),
        (
            CloudEvent.new("shop", "thing_done", {"n": 1}).to_json(),
            "flotilla.shop.other_thing",
            "malformed: type is not the subject it arrived on",
        ),
        (
            json.dumps(
                {"specversion": "1.0", "id": "x", "type": "flotilla.shop.thing_done"}
            ).encode(),
            "flotilla.shop.thing_done",
            "malformed: source is missing",
        ),
    ],
    ids=["not-json", "type-not-subject", "incomplete"],
)
async def test_a_malformed_event_is_dead_lettered_at_once(
    database: Database, nats_url: str, payload: bytes, subject: str, reason: str
) -> None:
    calls: list[str] = []

    async def never(event: CloudEvent, transaction: Transaction) -> None:
        calls.append(event.id)

    metrics = WatchedMetrics()
    async with running(consumer_of(database, nats_url, never, metrics)):
        client = await connect(nats_url, name="test", persistent=False)
        try:
            await ensure_streams(client.jetstream())
            await client.jetstream().publish(subject, payload, stream=EVENTS_STREAM)
        finally:
            await client.close()
        await metrics.until(lambda m: m.count(Outcome.DEAD_LETTERED) == 1)
    assert calls == []
    assert metrics.count(Outcome.RETRIED) == 0  # no retry: it cannot get better
    (letter,) = await dead_letters(nats_url)
    assert letter.data == payload
    assert letter.headers[DEAD_REASON] == reason
    assert letter.headers[ORIGINAL_SUBJECT] == subject
    assert letter.headers[DELIVERIES] == "1"


async def test_an_event_its_handler_calls_malformed_is_dead_lettered_at_once_without_effect(
    database: Database, nats_url: str
) -> None:
    # The data breaks the contract (a payload the handler's model refuses): no retry
    # can help, so the first delivery dead-letters it, and its transaction rolls back.
    record = recording_handler(NAME)
    attempts: list[int] = []

    async def strict(event: CloudEvent, transaction: Transaction) -> None:
        await record(event, transaction)
        if event.data["n"] == 13:
            attempts.append(event.data["n"])
            raise MalformedEvent("data.n: thirteen is not sold here")

    metrics = WatchedMetrics()
    events = await publish(database, nats_url, [12, 13, 14])
    async with running(consumer_of(database, nats_url, strict, metrics, max_deliver=3)):
        await metrics.until(
            lambda m: m.count(Outcome.DEAD_LETTERED) == 1 and m.count(Outcome.APPLIED) == 2
        )
    assert attempts == [13]  # one delivery, no retry
    assert metrics.count(Outcome.RETRIED) == 0
    assert await applied_counts(database) == {events[0].id: 1, events[2].id: 1}
    (letter,) = await dead_letters(nats_url)
    assert letter.data == events[1].to_json()
    assert letter.headers[DEAD_REASON] == "refused: data.n: thirteen is not sold here"
    assert letter.headers[DELIVERIES] == "1"


async def test_two_instances_of_a_consumer_share_the_work_and_apply_each_event_once(
    database_url: str, nats_url: str
) -> None:
    async with service_database(database_url) as one, service_database(database_url) as two:
        record = recording_handler(NAME)
        by_instance: dict[str, int] = {"one": 0, "two": 0}

        def counted(instance: str) -> Handler:
            async def handle(event: CloudEvent, transaction: Transaction) -> None:
                await record(event, transaction)
                by_instance[instance] += 1

            return handle

        metrics = WatchedMetrics()
        # Long pull requests: both instances are waiting when the events arrive.
        first = consumer_of(one, nats_url, counted("one"), metrics, fetch_timeout_s=10)
        second = consumer_of(two, nats_url, counted("two"), metrics, fetch_timeout_s=10)
        async with running(first, second):
            await _until_both_are_waiting(nats_url)
            events = await publish(one, nats_url, range(60))
            await metrics.until(lambda m: m.count(Outcome.APPLIED) == 60)
        assert await applied_counts(one) == {e.id: 1 for e in events}
        assert by_instance["one"] > 0
        assert by_instance["two"] > 0
        assert sum(by_instance.values()) == 60
        assert metrics.count(Outcome.DUPLICATE) == 0


async def _until_both_are_waiting(url: str, timeout_s: float = 20) -> None:
    """The broker's state, polled within a bound: both instances have a pull request open."""
    client = await connect(url, name="test", persistent=False)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    info = await client.jetstream().consumer_info(EVENTS_STREAM, NAME)
                except NotFoundError:
                    info = None
                if info is not None and (info.num_waiting or 0) >= 2:
                    return
                await asyncio.sleep(0.02)
    finally:
        await client.close()


async def test_an_event_delivered_again_is_a_duplicate_without_effect(
    database: Database, nats_url: str
) -> None:
    metrics = WatchedMetrics()
    (event,) = await publish(database, nats_url, [5])
    async with running(consumer_of(database, nats_url, recording_handler(NAME), metrics)):
        await metrics.until(lambda m: m.count(Outcome.APPLIED) == 1)
        async with raw_publisher(nats_url) as client:
            for _ in range(2):  # no Nats-Msg-Id: JetStream keeps both copies
                await client.jetstream().publish(event.type, event.to_json(), stream=EVENTS_STREAM)
        await metrics.until(lambda m: m.count(Outcome.DUPLICATE) == 2)
    assert await applied_counts(database) == {event.id: 1}
    async with database.transaction(write=False) as tx:
        assert await tx.scalar(count_of(effects)) == 1


async def test_streams_are_created_once_and_their_subjects_restored(nats_url: str) -> None:
    client = await connect(nats_url, name="test", persistent=False)
    try:
        js = client.jetstream()
        await ensure_streams(js)
        await ensure_streams(js)  # a second process starting: accepted as it is
        info = await js.stream_info(EVENTS_STREAM)
        assert info.config.subjects == ["flotilla.>"]
        assert info.config.duplicate_window == 120
        assert info.config.storage == api.StorageType.FILE.value
        # Someone narrowed the subjects (and set a limit of their own).
        await js.update_stream(info.config.evolve(subjects=["flotilla.shop.>"], max_msgs=1000))
        await ensure_streams(js)
        restored = (await js.stream_info(EVENTS_STREAM)).config
        assert restored.subjects == ["flotilla.>"]
        assert restored.max_msgs == 1000  # the operator's limit stays
    finally:
        await client.close()
