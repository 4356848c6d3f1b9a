"""The inbox consumer: applies each event once, in the consumer's database transaction.

A durable JetStream pull consumer with explicit acks, one per consumer name; every
instance of a service runs one under the same name and JetStream shares the messages
among them. Per message:

1. `CloudEvent.from_json`; a malformed event is dead-lettered at once (retrying cannot
   make it valid), and so is one whose handler raises `MalformedEvent` (its data breaks
   the contract).
2. One write transaction: the inbox row (consumer, event id) first, then the handler.
   If the row is there already the event was applied before: no effect (a duplicate).
   Commit, then ack. A crash before the ack redelivers it, and the inbox drops it.
3. A handler error rolls the transaction back and naks with a growing delay. After
   `max_deliver` deliveries it is dead-lettered: published unchanged to
   `flotilla-dlq.<name>` (stream FLOTILLA_DLQ) with why, where from and how often, and
   the original is terminated. A failure while the database itself does not answer is
   not the event's fault and never dead-letters it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import re
from collections.abc import Awaitable, Callable, Sequence

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Table, bindparam

from flotilla_kit.db import Database, Query, Transaction, UniqueViolation
from flotilla_kit.events._broker import (
    BROKER_TROUBLE,
    DLQ_STREAM,
    EVENTS_STREAM,
    connect,
    dlq_subject,
    ensure_streams,
)
from flotilla_kit.events._cloudevent import CloudEvent, MalformedEvent
from flotilla_kit.events._dead_letters import DEAD_REASON, DELIVERIES, ORIGINAL_SUBJECT
from flotilla_kit.events._metrics import EventMetrics, Outcome
from flotilla_kit.events._tables import CONSUMER_LENGTH
from flotilla_kit.logs import get_logger
from flotilla_kit.tracing import messaging_span

__all__ = ["Consumer", "Handler", "Verdict", "verdict"]

Handler = Callable[[CloudEvent, Transaction], Awaitable[None]]

_NAME = re.compile(rf"^[A-Za-z0-9_-]{{1,{CONSUMER_LENGTH}}}$")
_MAX_REASON = 300
# While events keep coming, how long a batch pull waits for more once none is waiting.
_BATCH_WAIT_S = 0.05
_log = get_logger("flotilla.events.consumer")


class Verdict(enum.Enum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


def verdict(*, deliveries: int, max_deliver: int, database_answers: bool) -> Verdict:
    """What to do with an event whose handler just failed on its `deliveries`-th delivery."""
    if not database_answers:
        return Verdict.RETRY  # the database is down, not the event broken: wait for it
    return Verdict.DEAD_LETTER if deliveries >= max_deliver else Verdict.RETRY


def _header_safe(text_: str) -> str:
    # A NATS header value is one line of printable characters.
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text_)
    return cleaned[:_MAX_REASON] or "-"


class Consumer:
    def __init__(
        self,
        *,
        database: Database,
        inbox: Table,
        nats_url: str,
        name: str,
        subjects: Sequence[str],
        handler: Handler,
        max_deliver: int = 5,
        metrics: EventMetrics | None = None,
        batch_size: int = 10,
        ack_wait_s: float = 30.0,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        fetch_timeout_s: float = 5.0,
        reconnect_s: float = 0.5,
    ) -> None:
        if not _NAME.match(name):
            raise ValueError(f"consumer name {name!r} must match {_NAME.pattern}")
        if not subjects or not all(s.startswith("flotilla.") for s in subjects):
            raise ValueError("subjects must be one or more subjects under flotilla.")
        if max_deliver < 1:
            raise ValueError("max_deliver must be at least 1")
        self.name = name
        self.subjects = tuple(subjects)
        self.metrics = metrics or EventMetrics()
        self._database = database
        self._inbox = inbox
        self._remember = Query(inbox.insert().values({c.name: bindparam(c.name) for c in inbox.c}))
        self._url = nats_url
        self._handler = handler
        self._max_deliver = max_deliver
        self._batch_size = batch_size
        self._ack_wait_s = ack_wait_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._fetch_timeout_s = fetch_timeout_s
        self._reconnect_s = reconnect_s
        self._js: JetStreamContext | None = None

    def _config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=self.name,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            filter_subjects=list(self.subjects),
            ack_wait=self._ack_wait_s,
            # Redeliveries are counted and ended here (dead letter), not by JetStream,
            # which would drop the message silently after its own limit.
            max_deliver=-1,
        )

    async def run(self) -> None:
        """Consume until cancelled. Survives broker restarts: the connection reconnects
        by itself, and a subscription that broke is set up again."""
        client = await connect(self._url, name=f"consumer-{self.name}")
        js = self._js = client.jetstream()
        pending: list[Msg] = []
        try:
            while True:
                try:
                    await ensure_streams(js)
                    await js.add_consumer(EVENTS_STREAM, self._config())
                    subscription = await js.pull_subscribe_bind(self.name, stream=EVENTS_STREAM)
                except BROKER_TROUBLE as exc:
                    _log.warning(
                        "consumer cannot subscribe yet", consumer=self.name, error=repr(exc)
                    )
                    await asyncio.sleep(self._reconnect_s)
                    continue
                try:
                    await self._consume(subscription, pending)
                except BROKER_TROUBLE as exc:
                    _log.warning(
                        "consumer lost its subscription", consumer=self.name, error=repr(exc)
                    )
                    await asyncio.sleep(self._reconnect_s)
                finally:
                    with contextlib.suppress(*BROKER_TROUBLE):
                        await subscription.unsubscribe()
        finally:
            await self._give_back(pending)
            with contextlib.suppress(*BROKER_TROUBLE):
                await client.close()

    async def _consume(
        self, subscription: JetStreamContext.PullSubscription, pending: list[Msg]
    ) -> None:
        """Batches while events keep coming; once none is waiting, one pull for a single
        event that the broker holds open for `fetch_timeout_s` and answers the moment
        one arrives (a batch pull would wait out its whole expiry for the rest of the
        batch, delaying a lone event by up to that long)."""
        busy = False
        while True:
            try:
                if busy:
                    pending[:] = await subscription.fetch(self._batch_size, timeout=_BATCH_WAIT_S)
                else:
                    pending[:] = await subscription.fetch(1, timeout=self._fetch_timeout_s)
            except TimeoutError:  # nothing to do (or the broker is away: it reconnects)
                busy = False
                continue
            busy = True
            while pending:
                message = pending[0]
                await self._process(message)
                pending.pop(0)

    async def _give_back(self, pending: list[Msg]) -> None:
        """Fetched but not processed when cancelled: redeliver them now, to another
        instance, instead of after `ack_wait`."""
        for message in pending:
            with contextlib.suppress(*BROKER_TROUBLE):
                await message.nak()

    # -- one message -----------------------------------------------------------------------

    async def _process(self, message: Msg) -> Outcome:
        deliveries = message.metadata.num_delivered
        try:
            event = CloudEvent.from_json(message.data, arrived_on=message.subject)
        except MalformedEvent as exc:
            await self._dead_letter(
                message, reason=f"malformed: {exc.reason}", deliveries=deliveries
            )
            return self._count(Outcome.DEAD_LETTERED)
        with messaging_span(
            "process",
            event.type,
            traceparent=event.traceparent,
            event_id=event.id,
            kind=SpanKind.CONSUMER,
        ) as span:
            span.set_attribute("messaging.consumer.group.name", self.name)
            try:
                applied = await self._apply(event)
            except MalformedEvent as exc:
                # The handler says the data can never be applied: retrying cannot help.
                span.set_status(Status(StatusCode.ERROR, "MalformedEvent"))
                await self._dead_letter(
                    message, reason=f"refused: {exc.reason}", deliveries=deliveries
                )
                return self._count(Outcome.DEAD_LETTERED)
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                return await self._failed(message, event, exc, deliveries)
        await message.ack()
        return self._count(Outcome.APPLIED if applied else Outcome.DUPLICATE)

    async def _apply(self, event: CloudEvent) -> bool:
        """True if applied now, False if the inbox says it was applied before."""
        async with self._database.transaction() as transaction:
            try:
                await transaction.execute(
                    self._remember,
                    consumer=self.name,
                    event_id=event.id,
                    subject=event.type,
                    received_at=dt.datetime.now(dt.UTC),
                )
            except UniqueViolation:
                # Another delivery (here or on another instance) applied it first; on
                # PostgreSQL this insert waited for that one to commit.
                return False
            await self._handler(event, transaction)
            await transaction.commit()
        return True

    async def _failed(
        self, message: Msg, event: CloudEvent, error: Exception, deliveries: int
    ) -> Outcome:
        decision = verdict(
            deliveries=deliveries,
            max_deliver=self._max_deliver,
            database_answers=await self._database_answers(),
        )
        if decision is Verdict.DEAD_LETTER:
            _log.error(
                "event dead-lettered", consumer=self.name, event_id=event.id,
                event_type=event.type, deliveries=deliveries, error=repr(error),
            )  # fmt: skip
            await self._dead_letter(
                message,
                reason=(
                    f"handler failed, delivery {deliveries} of {self._max_deliver}: "
                    f"{type(error).__name__}: {error}"
                ),
                deliveries=deliveries,
            )
            return self._count(Outcome.DEAD_LETTERED)
        delay = min(self._retry_initial_s * 2 ** (deliveries - 1), self._retry_max_s)
        _log.warning(
            "event handler failed; retrying", consumer=self.name, event_id=event.id,
            deliveries=deliveries, retry_in_s=delay, error=repr(error),
        )  # fmt: skip
        await message.nak(delay=delay)
        return self._count(Outcome.RETRIED)

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(5):
                await self._database.ping()
        except Exception:
            return False
        return True

    async def _dead_letter(self, message: Msg, *, reason: str, deliveries: int) -> None:
        assert self._js is not None
        await self._js.publish(
            dlq_subject(self.name),
            message.data,
            stream=DLQ_STREAM,
            headers={
                DEAD_REASON: _header_safe(reason),
                ORIGINAL_SUBJECT: message.subject,
                DELIVERIES: str(deliveries),
                # Dead-lettered twice (a crash before the term below): stored once.
                "Nats-Msg-Id": f"{self.name}:{message.metadata.sequence.stream}",
            },
        )
        await message.term()

    def _count(self, outcome: Outcome) -> Outcome:
        self.metrics.consumed_one(self.name, outcome)
        return outcome
