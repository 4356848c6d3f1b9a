"""Real time, for production (tests inject a clock they move themselves)."""

from __future__ import annotations

import asyncio
import datetime as dt

__all__ = ["SystemClock"]


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
