"""The outbox relay: moves committed events from a service's outbox table to JetStream.

At least once, in order: rows are published in `seq` order, a batch at a time (sent
together, acknowledgements awaited together), and only marked published once JetStream
acknowledged them. A relay that dies
between the acknowledgement and the mark publishes the row again when it restarts; the
copy carries the same Nats-Msg-Id and JetStream drops it (duplicate window), and the
consumers' inboxes drop whatever gets past that. Broker trouble is retried forever.

On PostgreSQL `seq` is taken at INSERT, not at commit, so two concurrent transactions
may commit out of `seq` order and be published in commit order instead; changes to one
entity are serialised by its row lock, so its events keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError, NotFoundError
from opentelemetry.trace import SpanKind
from sqlalchemy import Table, bindparam, delete, func, select, update

from flotilla_kit.db import Database, Query
from flotilla_kit.events._broker import BROKER_TROUBLE, EVENTS_STREAM, connect, ensure_streams
from flotilla_kit.events._metrics import EventMetrics
from flotilla_kit.logs import get_logger
from flotilla_kit.pacing import Pace
from flotilla_kit.tracing import messaging_span

__all__ = ["OutboxRelay", "run_relay"]

_PRUNE_EVERY_S = 60.0
# The longest wait between two polls of an outbox at rest: a row committed then reaches
# the broker within about this long (0.2 s while rows keep coming).
_AT_REST_S = 0.6
# The event's trace context, read from the stored JSON without decoding all of it.
_TRACEPARENT = re.compile(r'"traceparent"\s*:\s*"([0-9a-f-]{55})"')


@dataclass(frozen=True, slots=True)
class _Row:
    seq: int
    event_id: str
    subject: str
    payload: str


_log = get_logger("flotilla.events.relay")
_T = TypeVar("_T")


class OutboxRelay:
    """One per service database (`python -m flotilla_<service> relay`). `after_publish`
    is for tests: it runs after JetStream acknowledged a row and before the row is
    marked, which is the window a crash re-publishes."""

    def __init__(
        self,
        *,
        database: Database,
        outbox: Table,
        nats_url: str,
        service: str,
        metrics: EventMetrics | None = None,
        batch_size: int = 100,
        poll_interval_s: float = 0.2,
        publish_timeout_s: float = 2.0,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        keep_published_s: float | None = 86_400.0,
        after_publish: Callable[[str], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._database = database
        self._outbox = outbox
        self._url = nats_url
        self._service = service
        self.metrics = metrics or EventMetrics()
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._publish_timeout_s = publish_timeout_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._keep_published_s = keep_published_s
        self._after_publish = after_publish
        c = outbox.c
        self._select_unpublished = Query(
            select(c.seq, c.event_id, c.subject, c.payload)
            .where(c.published_at.is_(None))
            .order_by(c.seq)
            .limit(batch_size)
        )
        self._mark = Query(
            update(outbox)
            .where(c.seq == bindparam("row_seq"), c.published_at.is_(None))
            .values(published_at=bindparam("at"))
        )
        self._count_unpublished = Query(
            select(func.count().label("waiting"))
            .select_from(outbox)
            .where(c.published_at.is_(None))
        )
        self._prune = Query(
            delete(outbox).where(c.published_at.is_not(None), c.published_at < bindparam("cutoff"))
        )
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._streams_ready = False
        self._stopping = asyncio.Event()
        self._last_prune = time.monotonic()

    # -- one pass ------------------------------------------------------------------------

    async def publish_pending(self) -> int:
        """Publish every row not yet published, batch by batch, in `seq` order; returns
        how many JetStream acknowledged. Raises on broker or database trouble, after
        marking the rows acknowledged so far.

        A batch is pipelined: every row goes out at once, in `seq` order on the one
        connection, and the acknowledgements are awaited together (awaiting each before
        sending the next cost the relay and the broker a round trip per event). If one
        row is not acknowledged, rows after it may be on the stream already; it is sent
        again on the next pass, so a consumer can see it after them (handlers keep their
        own ordering rules anyway: instances apply events concurrently)."""
        js = await self._jetstream()
        total = 0
        while True:
            rows = await self._unpublished()
            drained = len(rows) < self._batch_size  # fewer than a batch: none is left
            if not rows:
                break
            sent = await asyncio.gather(
                *(self._publish(js, row) for row in rows), return_exceptions=True
            )
            acknowledged: list[int] = []
            failure: BaseException | None = None
            try:
                for row, outcome in zip(rows, sent, strict=True):
                    if isinstance(outcome, BaseException):
                        failure = failure or outcome
                        continue
                    if self._after_publish is not None:
                        self._after_publish(row.event_id)
                    acknowledged.append(row.seq)
            finally:
                if acknowledged:
                    await self._mark_published(acknowledged)
                    self.metrics.published_some(self._service, len(acknowledged))
            if failure is not None:
                raise failure
            total += len(acknowledged)
            _log.debug("outbox batch published", outbox=self._service, count=len(rows))
            if drained or self._stopping.is_set():
                break
        if drained:  # no query needed: the pass that found the outbox empty is the count
            self.metrics.backlog_is(self._service, 0)
        else:
            await self._measure_backlog()
        return total

    async def _jetstream(self) -> JetStreamContext:
        if self._client is None or self._client.is_closed:
            self._client = await connect(self._url, name=f"{self._service}-relay")
            self._js = self._client.jetstream(timeout=self._publish_timeout_s)
            self._streams_ready = False
        assert self._js is not None
        if not self._streams_ready:
            await ensure_streams(self._js)
            self._streams_ready = True
        return self._js

    async def _unpublished(self) -> list[_Row]:
        async with self._database.transaction(write=False) as transaction:
            rows = await transaction.all(self._select_unpublished)
        return [_Row(int(r.seq), r.event_id, r.subject, r.payload) for r in rows]

    async def _publish(self, js: JetStreamContext, row: _Row) -> None:
        found = _TRACEPARENT.search(row.payload)
        with messaging_span(
            "publish",
            row.subject,
            traceparent=found.group(1) if found else None,
            event_id=row.event_id,
            kind=SpanKind.PRODUCER,
        ):
            await self._publish_row(js, row)

    async def _publish_row(self, js: JetStreamContext, row: _Row) -> None:
        try:
            ack = await js.publish(
                row.subject,
                row.payload.encode(),
                timeout=self._publish_timeout_s,
                stream=EVENTS_STREAM,  # refused unless it lands in our stream
                headers={"Nats-Msg-Id": row.event_id},
            )
        except (NoStreamResponseError, NotFoundError):
            self._streams_ready = False  # a broker that lost its store: create them again
            raise
        if ack.duplicate:
            _log.info("event was already on the stream", event_id=row.event_id)

    async def _mark_published(self, seqs: list[int]) -> None:
        at = dt.datetime.now(dt.UTC)
        async with self._database.transaction() as transaction:
            await transaction.execute_many(self._mark, [{"row_seq": s, "at": at} for s in seqs])
            await transaction.commit()

    async def _measure_backlog(self) -> None:
        async with self._database.transaction(write=False) as transaction:
            waiting = await transaction.scalar(self._count_unpublished)
        self.metrics.backlog_is(self._service, int(waiting or 0))

    async def prune_published(self, *, older_than_s: float) -> int:
        """Delete rows published more than `older_than_s` ago (they only serve to look
        back at what was sent)."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than_s)
        async with self._database.transaction() as transaction:
            pruned = await transaction.execute(self._prune, cutoff=cutoff)
            await transaction.commit()
        return pruned

    # -- the loop ------------------------------------------------------------------------

    def stop(self) -> None:
        """`run()` returns after the batch it is publishing (signal handlers call this)."""
        self._stopping.set()

    async def run(self) -> None:
        """Publish until `stop()`, polling the outbox every `poll_interval_s` while rows
        come, up to `_AT_REST_S` apart while none does; wait out broker and database
        trouble with backoff, forever."""
        _log.info("outbox relay started", outbox=self._service, nats_url=self._url)
        delay = self._retry_initial_s
        failing = False
        # Every `poll_interval_s` while rows come; at rest up to `_AT_REST_S` between polls.
        pace = Pace(self._poll_interval_s, at_rest_s=_AT_REST_S)
        try:
            while not self._stopping.is_set():
                try:
                    # Waiting for a broker that is down must not hold up a stop.
                    if await self._unless_stopped(self._jetstream()) is None:
                        break
                    published = await self.publish_pending()
                except BROKER_TROUBLE as exc:
                    self.metrics.publish_failed(self._service)
                    if not failing:
                        _log.warning(
                            "outbox relay cannot publish; retrying",
                            outbox=self._service, error=repr(exc),
                        )  # fmt: skip
                    failing = True
                    await self._pause(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                if failing:
                    _log.info("outbox relay publishing again", outbox=self._service)
                    failing = False
                delay = self._retry_initial_s
                wait_s = pace.after(found_work=published > 0)
                if published == 0:
                    await self._prune_when_due()
                    await self._pause(wait_s)
        finally:
            await self.close()
            _log.info("outbox relay stopped", outbox=self._service)

    async def _unless_stopped(self, work: Awaitable[_T]) -> _T | None:
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, *BROKER_TROUBLE):
            await task
        return None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _prune_when_due(self) -> None:
        if self._keep_published_s is None:
            return
        if time.monotonic() - self._last_prune < _PRUNE_EVERY_S:
            return
        self._last_prune = time.monotonic()
        pruned = await self.prune_published(older_than_s=self._keep_published_s)
        if pruned:
            _log.info("published outbox rows pruned", outbox=self._service, count=pruned)

    async def close(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(*BROKER_TROUBLE):
                await client.close()


def run_relay(
    *,
    database: Database,
    outbox: Table,
    nats_url: str,
    service: str,
    metrics: EventMetrics | None = None,
    poll_interval_s: float = 0.2,
) -> None:
    """Blocking: a service's `relay` command. SIGTERM or SIGINT stops it after the batch
    it is publishing; the database is disposed of on the way out."""

    async def main() -> None:
        relay = OutboxRelay(
            database=database,
            outbox=outbox,
            nats_url=nats_url,
            service=service,
            metrics=metrics,
            poll_interval_s=poll_interval_s,
        )
        loop = asyncio.get_running_loop()
        stops = (signal.SIGTERM, signal.SIGINT)
        for sig in stops:
            loop.add_signal_handler(sig, relay.stop)
        try:
            await relay.run()
        finally:
            for sig in stops:
                loop.remove_signal_handler(sig)
            await database.dispose()

    asyncio.run(main())
