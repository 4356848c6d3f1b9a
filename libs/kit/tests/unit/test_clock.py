"""The clock every service is given, and the one tests move by hand."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from flotilla_kit.clock import ManualClock, utc_now

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_utc_now_is_aware_and_in_utc() -> None:
    before = dt.datetime.now(dt.UTC)
    now = utc_now()
    assert now.utcoffset() == dt.timedelta(0)
    assert before <= now <= dt.datetime.now(dt.UTC)


def test_a_manual_clock_stands_still_until_moved() -> None:
    clock = ManualClock(T0)
    assert clock() == clock.now == T0
    clock.advance(1.5)
    assert clock() == T0 + dt.timedelta(seconds=1.5)
    clock.now = T0  # back in time, too
    assert clock() == T0


def test_a_manual_clock_starts_at_the_real_time_by_default() -> None:
    before = utc_now()
    assert before <= ManualClock()() <= utc_now()


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(dt.datetime(2030, 1, 1))
    clock = ManualClock(T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.now = dt.datetime(2030, 1, 1)


async def test_sleep_returns_once_the_clock_passes_its_end() -> None:
    clock = ManualClock(T0)
    sleeper = asyncio.create_task(clock.sleep(5))
    assert await clock.next_sleep() == 5
    clock.advance(4.9)
    await asyncio.sleep(0)
    assert not sleeper.done()
    clock.advance(0.1)
    await asyncio.wait_for(sleeper, timeout=1)
    assert clock.sleeps == [5]


async def test_setting_the_time_wakes_only_the_sleepers_it_reaches() -> None:
    clock = ManualClock(T0)
    short = asyncio.create_task(clock.sleep(1))
    long = asyncio.create_task(clock.sleep(10))
    assert [await clock.next_sleep(), await clock.next_sleep()] == [1, 10]
    clock.now = T0 + dt.timedelta(seconds=2)
    await asyncio.wait_for(short, timeout=1)
    assert not long.done()
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long
    clock.advance(100)  # a cancelled sleeper is gone: nothing to wake
    assert clock.sleeps == [1, 10]
