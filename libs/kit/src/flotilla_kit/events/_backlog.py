"""The outbox backlog as a serving instance sees it: the relay is its own process and
serves no `/metrics`, so each serving instance of a producer counts the rows not yet
published, every few seconds, into `flotilla_outbox_backlog` of its own registry (what
Prometheus scrapes and the `FlotillaOutboxBacklog` alert reads)."""

from __future__ import annotations

import asyncio

from sqlalchemy import Table, func, select

from flotilla_kit.db import Database, Query
from flotilla_kit.events._metrics import EventMetrics
from flotilla_kit.logs import get_logger

__all__ = ["count_backlog", "watch_backlog"]

_log = get_logger("flotilla.events.backlog")


_counts: dict[Table, Query] = {}


def _count_query(outbox: Table) -> Query:
    query = _counts.get(outbox)
    if query is None:
        query = _counts[outbox] = Query(
            select(func.count().label("waiting"))
            .select_from(outbox)
            .where(outbox.c.published_at.is_(None))
        )
    return query


async def count_backlog(database: Database, outbox: Table) -> int:
    async with database.transaction(write=False) as transaction:
        waiting = await transaction.scalar(_count_query(outbox))
    return int(waiting or 0)


async def watch_backlog(
    database: Database,
    outbox: Table,
    *,
    service: str,
    metrics: EventMetrics,
    interval_s: float = 5.0,
) -> None:
    """Until cancelled: the backlog into the gauge every `interval_s` (a failed count is
    logged and tried again at the next one; the gauge keeps its last value)."""
    while True:
        try:
            metrics.backlog_is(service, await count_backlog(database, outbox))
        except Exception as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # Cancelled in the middle of a query, which the driver may surface as
                # another error: stop, do not swallow the cancellation.
                raise asyncio.CancelledError from exc
            _log.warning("could not count the outbox backlog", error=repr(exc))  # next tick
        await asyncio.sleep(interval_s)
