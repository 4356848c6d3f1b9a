"""What a WSGI app built by the kit (Flask, Django) owns beside its framework: settings,
metrics, the access log, the token verifier, the drain flag, the readiness checks, the
service's lifespan, and the event loop thread the async parts run on."""

from __future__ import annotations

import ctypes
import multiprocessing
import threading
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, TypeVar

from flotilla_kit.access_log import ServiceAccessLog
from flotilla_kit.app import keeping_keys_fresh
from flotilla_kit.health import Drain, ReadinessCheck, check_readiness
from flotilla_kit.logs import get_logger
from flotilla_kit.metrics import HttpMetrics
from flotilla_kit.security import bearer_token, token_refused
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.tokens import Principal, TokenError, TokenVerifier
from flotilla_kit.wsgi._loop import BackgroundLoop

__all__ = ["Chassis", "Lifespan", "SharedDrain"]

_T = TypeVar("_T")
_log = get_logger("flotilla.wsgi")
# What a service runs for as long as it serves (a `Database`, inbox consumers, other
# background tasks): entered on the chassis's loop when it starts, exited when it stops.
Lifespan = Callable[[], AbstractAsyncContextManager[None]]


class SharedDrain(Drain):
    """`Drain` in memory shared with the processes forked after it was made: a WSGI
    server's supervisor (which gets SIGTERM) starts the drain that its worker process
    (which answers `/readyz`) reads."""

    def __init__(self) -> None:
        self._flag = multiprocessing.RawValue(ctypes.c_bool, False)

    @property
    def draining(self) -> bool:
        return bool(self._flag.value)

    @draining.setter
    def draining(self, value: bool) -> None:
        self._flag.value = value

    def start(self) -> None:
        self._flag.value = True


class Chassis:
    """Started in the process that serves (`start`, idempotent; a request starts it too
    when nothing did), stopped when serving ends (`stop`). `lifespan`, when given, is
    entered on the loop at the start (after the keys are fetched) and exited at the stop,
    before the refreshers end."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        verifier: TokenVerifier,
        readiness: Mapping[str, ReadinessCheck],
        lifespan: Lifespan | None = None,
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self.readiness = dict(readiness)
        self.lifespan = lifespan
        self.metrics = HttpMetrics(settings.service_name)
        self.access_log = ServiceAccessLog(
            service=settings.service_name,
            node=f"{settings.service_name}-{settings.instance_id}",
            enabled=settings.log_level in ("debug", "info"),
        )
        self.drain: Drain = SharedDrain()
        self.loop = BackgroundLoop(settings.service_name)
        self._stack: AsyncExitStack | None = None
        self._access_lock = threading.Lock()
        self._start_lock = threading.Lock()  # two first requests start it once

    @property
    def started(self) -> bool:
        """Started in this process (a forked one starts its own)."""
        return self.loop.running and self._stack is not None

    def start(self) -> None:
        with self._start_lock:
            if self.started:
                return
            self.loop.start()
            try:
                self._stack = self.loop.run(self._enter())
            except BaseException:
                self.loop.stop()
                raise

    async def _enter(self) -> AsyncExitStack:
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(keeping_keys_fresh(self.verifier))
            if self.lifespan is not None:
                await stack.enter_async_context(self.lifespan())
        except BaseException:
            await stack.aclose()  # a failed start leaves nothing running
            raise
        return stack

    def stop(self) -> None:
        with self._start_lock:
            if not self.loop.running:
                return
            stack, self._stack = self._stack, None
            try:
                if stack is not None:
                    self.loop.run(stack.aclose(), timeout_s=10.0)
            finally:
                self.loop.stop()
                self.access_log.flush()

    def record_access(self, **fields: Any) -> None:
        """The access line of a request (`ServiceAccessLog.record`), from any request
        thread: with no event loop in a request thread, the line is written at once."""
        with self._access_lock:
            self.access_log.record(**fields)

    def run(self, coroutine: Coroutine[Any, Any, _T], timeout_s: float | None = None) -> _T:
        """Run a coroutine on the app's event loop and wait for it (a view calling another
        service with the kit's `HttpClient`, a database call of the kit)."""
        if not self.started:
            self.start()
        return self.loop.run(coroutine, timeout_s)

    def principal(self, authorization: str) -> Principal:
        """The caller an `Authorization` header proves, or the 401 problem: as the FastAPI
        services check it, a token seen before without the hop to the event loop."""
        token = bearer_token(authorization)
        principal = self.verifier.cached(token)
        if principal is not None:
            return principal
        try:
            return self.run(self.verifier.verify(token))
        except TokenError as exc:
            raise token_refused(exc) from exc

    def check_readiness(self) -> dict[str, str]:
        return self.run(check_readiness(self.readiness))
