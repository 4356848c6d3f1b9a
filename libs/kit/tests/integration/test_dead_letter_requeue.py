"""Requeueing a dead letter against a real NATS JetStream: a handler that fails gives the
event up, is fixed, and applies the requeued event once (another consumer of the subject,
which had applied it, ignores the copy); a crash between publishing and removing the
letter leaves it to be requeued again without a second copy; what cannot be requeued is
refused and kept."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import select

from flotilla_kit.db import Database, Query, Transaction
from flotilla_kit.events import (
    BROKER_TROUBLE,
    DEAD_REASON,
    DELIVERIES,
    DLQ_STREAM,
    ORIGINAL_SUBJECT,
    CloudEvent,
    Consumer,
    DeadLetterNotFound,
    DeadLetterNotRequeueable,
    Handler,
    OutboxRelay,
    Outcome,
    connect,
    dlq_subject,
    ensure_streams,
    list_dead_letters,
    requeue_dead_letter,
)
from libs.kit.tests.integration.events_world import (
    WatchedMetrics,
    effects,
    inbox,
    outbox,
    produce,
    recording_handler,
    running,
    service_database,
    stream_messages,
)

NAME = "shop-books"
OTHER = "shop-audit"
APPLIED_BY = Query(select(effects.c.consumer, effects.c.event_id))


@pytest.fixture
async def database(sqlite_url: str) -> AsyncIterator[Database]:
    async with service_database(sqlite_url) as db:
        yield db


def consumer(
    database: Database, url: str, name: str, handler: Handler, metrics: WatchedMetrics
) -> Consumer:
    return Consumer(
        database=database, inbox=inbox, nats_url=url, name=name, subjects=["flotilla.shop.>"],
        handler=handler, max_deliver=2, metrics=metrics, retry_initial_s=0.05, retry_max_s=0.1,
        fetch_timeout_s=0.5,
    )  # fmt: skip


class Fixable:
    """A handler that fails until it is fixed (the operator deployed the fix)."""

    def __init__(self) -> None:
        self.fixed = False
        self._record = recording_handler(NAME)

    async def __call__(self, event: CloudEvent, transaction: Transaction) -> None:
        await self._record(event, transaction)  # rolled back while it fails
        if not self.fixed:
            raise LookupError(f"no product for {event.subject}")


async def publish(database: Database, url: str, n: int) -> CloudEvent:
    """Through the real path: an outbox row, then the relay (Nats-Msg-Id = the event id)."""
    (event,) = await produce(database, [n])
    relay = OutboxRelay(database=database, outbox=outbox, nats_url=url, service="shop")
    try:
        assert await relay.publish_pending() == 1
    finally:
        await relay.close()
    return event


async def applied(database: Database) -> Counter[tuple[str, str]]:
    """How often each consumer applied each event."""
    async with database.transaction(write=False) as transaction:
        rows = await transaction.all(APPLIED_BY)
    return Counter((row.consumer, row.event_id) for row in rows)


async def copies_of(url: str, event: CloudEvent) -> list[dict[str, Any]]:
    return [
        {"seq": m.seq, "msg_id": m.headers.get("Nats-Msg-Id"), "data": m.data}
        for m in await stream_messages(url)
        if m.subject == event.type
    ]


async def test_a_requeued_dead_letter_is_applied_once_by_the_fixed_handler(
    database: Database, nats_url: str
) -> None:
    handler = Fixable()
    metrics = WatchedMetrics()
    event = await publish(database, nats_url, 13)
    books = consumer(database, nats_url, NAME, handler, metrics)
    audit = consumer(database, nats_url, OTHER, recording_handler(OTHER), metrics)
    async with running(books, audit):
        await metrics.until(
            lambda m: (
                m.count(Outcome.DEAD_LETTERED, NAME) == 1 and m.count(Outcome.APPLIED, OTHER) == 1
            )
        )
        (letter,) = await list_dead_letters(nats_url)
        assert (letter.consumer, letter.event_id, letter.original_subject) == (
            NAME, event.id, event.type,
        )  # fmt: skip
        handler.fixed = True
        # Well within the stream's duplicate window of the event's first publication.
        done = await requeue_dead_letter(nats_url, letter.sequence)
        await metrics.until(
            lambda m: m.count(Outcome.APPLIED, NAME) == 1 and m.count(Outcome.DUPLICATE, OTHER) == 1
        )
    assert await applied(database) == {(NAME, event.id): 1, (OTHER, event.id): 1}
    assert await list_dead_letters(nats_url) == []
    first, again = await copies_of(nats_url, event)
    assert first["msg_id"] == event.id
    assert again["msg_id"] != event.id  # a fresh one: JetStream did not drop it
    assert again["data"] == first["data"] == event.to_json()  # the original payload
    assert (done.subject, done.stream_sequence, done.duplicate) == (event.type, again["seq"], False)
    assert done.to_json()["event_id"] == event.id
    with pytest.raises(DeadLetterNotFound, match=f"no dead letter #{letter.sequence}"):
        await requeue_dead_letter(nats_url, letter.sequence)


class CrashBeforeRemoval(Client):
    """A connection whose process dies after the event is published again and before
    the letter is removed."""

    def jetstream(self, **options: Any) -> JetStreamContext:
        js = super().jetstream(**options)

        async def die(stream_name: str, seq: int) -> bool:
            raise ConnectionResetError("the requeueing process died here")

        js.delete_msg = die  # type: ignore[method-assign]
        return js


async def test_a_requeue_cut_short_before_the_removal_leaves_the_letter_to_requeue_again(
    database: Database, nats_url: str
) -> None:
    handler = Fixable()
    metrics = WatchedMetrics()
    event = await publish(database, nats_url, 21)
    async with running(consumer(database, nats_url, NAME, handler, metrics)):
        await metrics.until(lambda m: m.count(Outcome.DEAD_LETTERED) == 1)
        handler.fixed = True
        (letter,) = await list_dead_letters(nats_url)
        dying = CrashBeforeRemoval()
        await dying.connect(nats_url, allow_reconnect=False)
        try:
            with pytest.raises(ConnectionResetError):
                await requeue_dead_letter(dying, letter.sequence)
        finally:
            await dying.close()
        await metrics.until(lambda m: m.count(Outcome.APPLIED) == 1)  # the event went
        assert [d.sequence for d in await list_dead_letters(nats_url)] == [letter.sequence]
        # Requeued again: published with the same message id, so JetStream keeps one copy.
        done = await requeue_dead_letter(nats_url, letter.sequence)
    assert done.duplicate
    assert await list_dead_letters(nats_url) == []
    assert len(await copies_of(nats_url, event)) == 2  # the original and one requeued
    assert await applied(database) == {(NAME, event.id): 1}


async def test_two_operators_requeueing_one_letter_at_once_publish_it_once(
    database: Database, nats_url: str
) -> None:
    handler = Fixable()
    metrics = WatchedMetrics()
    event = await publish(database, nats_url, 34)
    async with running(consumer(database, nats_url, NAME, handler, metrics)):
        await metrics.until(lambda m: m.count(Outcome.DEAD_LETTERED) == 1)
    (letter,) = await list_dead_letters(nats_url)
    outcomes = await asyncio.gather(
        requeue_dead_letter(nats_url, letter.sequence),
        requeue_dead_letter(nats_url, letter.sequence),
        return_exceptions=True,
    )
    # Each one requeued it or found it gone; never an error, never two copies.
    assert all(
        not isinstance(o, BaseException) or isinstance(o, DeadLetterNotFound) for o in outcomes
    )
    assert any(not isinstance(o, BaseException) for o in outcomes)
    assert await list_dead_letters(nats_url) == []
    assert len(await copies_of(nats_url, event)) == 2


async def test_a_letter_that_cannot_go_back_is_refused_and_kept(nats_url: str) -> None:
    client = await connect(nats_url, name="test", persistent=False)
    try:
        js = client.jetstream()
        with pytest.raises(DeadLetterNotFound):  # no dead-letter stream yet
            await requeue_dead_letter(client, 1)
        await ensure_streams(js)
        valid = CloudEvent.new("shop", "thing_done", {"n": 1})
        kept = [
            (b"{not json", {ORIGINAL_SUBJECT: valid.type}, "not a valid event for"),
            (valid.to_json(), {}, "does not say where it came from"),
            (valid.to_json(), {ORIGINAL_SUBJECT: "flotilla.shop.other"}, "not a valid event for"),
            (
                valid.to_json(),
                {ORIGINAL_SUBJECT: "elsewhere.thing"},
                "is not one of FLOTILLA_EVENTS",
            ),
        ]
        for payload, headers, _ in kept:
            await js.publish(
                dlq_subject(NAME), payload, stream=DLQ_STREAM,
                headers={DEAD_REASON: "malformed", DELIVERIES: "1", **headers},
            )  # fmt: skip
        letters = await list_dead_letters(client)  # a connection of the caller's own
        assert len(letters) == len(kept)
        for letter, (_, _, why) in zip(letters, kept, strict=True):
            with pytest.raises(DeadLetterNotRequeueable, match=why) as refused:
                await requeue_dead_letter(client, letter.sequence)
            assert refused.value.sequence == letter.sequence
        for missing in (0, letters[-1].sequence + 1):
            with pytest.raises(DeadLetterNotFound):
                await requeue_dead_letter(client, missing)
        assert [d.sequence for d in await list_dead_letters(client)] == [
            d.sequence for d in letters
        ]
        assert not client.is_closed  # the caller's connection stays the caller's
    finally:
        await client.close()
    assert [m.subject for m in await stream_messages(nats_url)] == []  # nothing published


async def test_an_unreachable_broker_is_broker_trouble() -> None:
    with pytest.raises(BROKER_TROUBLE):
        await requeue_dead_letter("nats://127.0.0.1:1", 1)
