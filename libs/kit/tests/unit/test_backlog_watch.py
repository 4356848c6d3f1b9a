"""The backlog watcher must stop when cancelled, even when the cancellation reaches it
as another error (a driver interrupted mid-query may raise its own)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flotilla_kit.events import EventMetrics, _backlog, watch_backlog


async def test_a_cancellation_disguised_as_a_driver_error_still_stops_the_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = asyncio.Event()

    async def interrupted_count(database: Any, outbox: Any) -> int:
        counting.set()
        try:
            await asyncio.Event().wait()  # a query that has not answered yet
        except asyncio.CancelledError as exc:
            raise RuntimeError("connection invalidated mid-query") from exc
        return 0

    monkeypatch.setattr(_backlog, "count_backlog", interrupted_count)
    watch = asyncio.create_task(
        watch_backlog(None, None, service="shop", metrics=EventMetrics())  # type: ignore[arg-type]
    )
    await counting.wait()
    watch.cancel()
    done, _ = await asyncio.wait({watch}, timeout=3)  # its next tick would be 5 s away
    assert watch in done
    assert watch.cancelled()
