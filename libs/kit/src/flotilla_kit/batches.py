"""Work kept off the request path: the request appends one item, and the items are handed
on together when `batch` of them have gathered or `flush_after_s` after the first (the
access log's lines, the server spans)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Batched"]

_Item = TypeVar("_Item")


class Batched(Generic[_Item]):
    def __init__(
        self, emit: Callable[[list[_Item]], None], *, flush_after_s: float, batch: int
    ) -> None:
        self._emit = emit
        self._flush_after_s = flush_after_s
        self._batch = batch
        self._pending: list[_Item] = []
        self._flush_handle: asyncio.TimerHandle | None = None

    def add(self, item: _Item) -> None:
        pending = self._pending
        pending.append(item)
        if len(pending) >= self._batch:
            self.flush()
        elif self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a unit test): now
                self.flush()
                return
            self._flush_handle = loop.call_later(self._flush_after_s, self.flush)

    def discard(self) -> None:
        """Drop what has gathered, handing on nothing."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pending = []

    def flush(self) -> None:
        """Hand on what has gathered (also at shutdown)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._emit(pending)
