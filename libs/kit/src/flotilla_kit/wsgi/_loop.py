"""An asyncio event loop in a thread of its own, for the async parts of the kit (the token
verifier, the key and revocation refreshers, readiness checks, `HttpClient`) inside a
synchronous WSGI app."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["BackgroundLoop"]

_T = TypeVar("_T")


class BackgroundLoop:
    """One event loop, run by one daemon thread, in the process that started it.

    `run(coroutine)` runs a coroutine there and waits for its result in the calling thread
    (a request's), in a copy of the caller's context: the request id and the trace reach
    the coroutine's log lines and outgoing calls. A process forked from one that started
    the loop has no such thread (a fork copies only the forking thread): `running` is
    false there until `start` makes its own.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None and self._pid == os.getpid()

    def start(self) -> None:
        with self._lock:
            if self.running:
                return
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(loop, ready), name=f"{self._name}-loop", daemon=True
            )
            thread.start()
            ready.wait()
            self._loop, self._thread, self._pid = loop, thread, os.getpid()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def run(self, coroutine: Coroutine[Any, Any, _T], timeout_s: float | None = None) -> _T:
        """The coroutine's result (or its exception), run on the loop; from any thread
        but the loop's own."""
        loop = self._loop
        if loop is None or not self.running:
            coroutine.close()
            raise RuntimeError(f"the event loop of {self._name} is not running: start it first")
        result: concurrent.futures.Future[_T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[_T]] = []

        def settle(task: asyncio.Task[_T]) -> None:
            if task.cancelled():
                result.cancel()
            elif (error := task.exception()) is not None:
                result.set_exception(error)
            else:
                result.set_result(task.result())

        def submit() -> None:
            # Runs in the caller's context (below), so the task copies that context.
            task = loop.create_task(coroutine)
            task.add_done_callback(settle)
            tasks.append(task)

        loop.call_soon_threadsafe(submit, context=contextvars.copy_context())
        try:
            return result.result(timeout_s)
        except concurrent.futures.TimeoutError:
            loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
            raise TimeoutError(f"no result within {timeout_s} s") from None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel what still runs on the loop and end its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None or not self.running:
                return
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
            self._loop = self._thread = self._pid = None
