"""The one shape of time every service is given: a `Clock` is a function that returns the
current time (timezone-aware, UTC), and `utc_now` is the real one. Code that waits (a
retry's backoff, a background loop) is given a `Sleep` too, `asyncio.sleep` in production.

Nothing below the bootstrap reads the system clock itself: it calls the clock it was given,
so a test hands it a `ManualClock` and decides when time passes. A `ManualClock` stands
still until the test moves it (`advance`, or setting `now`); its `sleep` returns once the
clock has been moved past the sleeper's end, and `next_sleep` waits until someone goes to
sleep and says for how long, so a test can let a backoff pass without waiting for it."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

__all__ = ["Clock", "ManualClock", "Sleep", "utc_now"]

Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], Awaitable[None]]


def utc_now() -> dt.datetime:
    """The system's time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class ManualClock:
    """Time that moves only when a test says (a `Clock`; `sleep` is its `Sleep`)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        if start is not None and start.utcoffset() is None:
            raise ValueError("a clock's time must be timezone-aware")
        self._now = start if start is not None else utc_now()
        self.sleeps: list[float] = []  # every sleep asked for, in order
        self._sleepers: list[tuple[dt.datetime, asyncio.Future[None]]] = []
        self._asleep: asyncio.Queue[float] | None = None

    def __call__(self) -> dt.datetime:
        return self._now

    @property
    def now(self) -> dt.datetime:
        return self._now

    @now.setter
    def now(self, value: dt.datetime) -> None:
        """Set the time (also back); wakes the sleepers whose end it reaches."""
        if value.utcoffset() is None:
            raise ValueError("a clock's time must be timezone-aware")
        self._now = value
        for entry in list(self._sleepers):
            end, wake = entry
            if end <= value and not wake.done():
                self._sleepers.remove(entry)
                wake.set_result(None)

    def advance(self, seconds: float) -> None:
        self.now = self._now + dt.timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has been moved `seconds` past now."""
        self.sleeps.append(seconds)
        wake = asyncio.get_running_loop().create_future()
        entry = (self._now + dt.timedelta(seconds=seconds), wake)
        self._sleepers.append(entry)
        self._queue().put_nowait(seconds)
        try:
            await wake
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    async def next_sleep(self) -> float:
        """Wait until someone goes to sleep (or take one who already did, in order); how
        long they sleep for."""
        return await self._queue().get()

    def _queue(self) -> asyncio.Queue[float]:
        # Made on first use, inside a running loop, so a clock can be made outside one.
        if self._asleep is None:
            self._asleep = asyncio.Queue()
        return self._asleep
