"""Run a service's ASGI app under uvicorn (uvloop + httptools), with TLS when configured.

Stopping: SIGTERM (Kubernetes, a scale-down) first drains: `/readyz` answers 503
`draining` for `drain_s` while every request is still served, so load balancers take the
instance out before it stops accepting; then uvicorn stops as usual (it closes the
listener and idle connections, and lets requests in flight finish). SIGINT (Ctrl-C, a
whole system stopping) and a second signal skip the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import time
from collections.abc import Callable
from functools import partial
from types import FrameType

import uvicorn
from fastapi import FastAPI

from flotilla_kit.health import Drain
from flotilla_kit.logs import get_logger
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.tls import reload_changed_certificates, server_context

__all__ = ["DrainingServer", "serve"]

_log = get_logger("flotilla.server")
_KEEP_ALIVE_S = 30
_TICKS_PER_SECOND = 10  # uvicorn's `on_tick` counts tenths of a second
_CERTIFICATE_CHECK_S = 30


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain period between SIGTERM and the stop."""

    def __init__(self, config: uvicorn.Config, drain: Drain, drain_s: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._drain_s = drain_s
        # When the drain ends (monotonic); None while no SIGTERM came.
        self._stop_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._stop_at is None and self._drain_s > 0:
            # Called from the signal handler: only note it; `on_tick` stops when it is time.
            self._stop_at = time.monotonic() + self._drain_s
            self._drain.start()
        else:
            super().handle_exit(sig, frame)
        if self._wake is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)  # a signal does not wait a tick

    async def main_loop(self) -> None:
        """uvicorn's loop wakes ten times a second to look for a stop, which costs an idle
        instance 0.2 % of a core (measured: an idle uvicorn with an empty app, 30 s); this
        one ticks once a second (uvicorn's per-second work: the Date header) and a stop
        wakes it at once."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + _TICKS_PER_SECOND) % 864_000  # what uvicorn's ticks count
            tick_s = 1.0
            if self._stop_at is not None:  # draining: stop when the drain ends, not after
                tick_s = min(tick_s, max(0.0, self._stop_at - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick_s)
            self._wake.clear()
            should_exit = await self.on_tick(counter)

    async def on_tick(self, counter: int) -> bool:
        if counter % (_TICKS_PER_SECOND * _CERTIFICATE_CHECK_S) == 0:
            reload_changed_certificates()  # a renewed certificate, for the next handshakes
        if self._stop_at is not None and not self.should_exit:
            if counter % _TICKS_PER_SECOND == 0:  # each second
                _log.info("draining", seconds_left=round(self._stop_at - time.monotonic(), 1))
            if time.monotonic() >= self._stop_at:
                self.should_exit = True
        return await super().on_tick(counter)


def _ssl_context(
    settings: ServiceSettings, config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    tls = settings.tls
    assert tls.cert_file is not None
    assert tls.key_file is not None
    return server_context(
        tls.cert_file, tls.key_file, tls.ca_file, require_client_cert=tls.require_client_cert
    )


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    tls = settings.tls
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        # Callers poll every few seconds (revocations every 5 s): a connection kept 30 s
        # saves them and this instance a TLS handshake each time. Clients give theirs up
        # sooner (the kit's after 20 s, the gateway's after 4 s), so none is closed
        # under a request.
        timeout_keep_alive=_KEEP_ALIVE_S,
        # The kit's own context rather than uvicorn's: it is reloaded when the files change.
        ssl_context_factory=partial(_ssl_context, settings) if tls.enabled else None,
    )
    drain: Drain = app.state.drain
    DrainingServer(config, drain, settings.drain_s).run()
