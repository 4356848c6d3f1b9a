"""Run a WSGI app built on the kit (`flotilla_kit.flask.create_flask_app`,
`flotilla_kit.django.create_django_app`) under granian, with TLS when configured:
`serve_wsgi(app, settings)`, the WSGI counterpart of `flotilla_kit.server.serve`.

**Why granian.** Measured here (2 cores shared with other work, load average 4.5 to 7
during the runs: compare within a column, not with other machines): a Flask app from
`create_flask_app` answering an authenticated GET (a token seen before, access log on),
wrk for 8 s over loopback after a 2 s warm-up, one worker process each, CPU summed over
the server's processes; the same route in a FastAPI app under `serve` for reference.

| server: req/s, µs CPU per request | 8 connections | 1 connection |
|---|---|---|
| granian 2.8.9 (`serve_wsgi`: WSGI, 8 threads) | 5,796/s, 170 µs | 6,230/s, 142 µs |
| gunicorn 27.0.1, `sync` worker | 2,232/s, 334 µs | 2,070/s, 356 µs |
| gunicorn 27.0.1, `gthread` worker, 8 threads | 2,774/s, 341 µs | 2,494/s, 345 µs |
| FastAPI under `serve` (uvicorn), for reference | 6,042/s, 134 µs | 5,478/s, 142 µs |

granian parses HTTP and keeps connections alive in Rust and calls the app from a pool
of Python threads; gunicorn's `sync` worker serves one connection at a time (no
keep-alive), and its `gthread` worker pays Python's selectors and thread hand-offs.

**Processes.** granian supervises one worker process (forked: the app object is
inherited, not imported again). The app's chassis (its event loop thread: the keys and
revocations refreshers, the verifier) starts in the worker, after the fork, and stops
there when serving ends. The worker dies with the supervisor, even a SIGKILLed one
(`_die_with`: on Linux; granian's own worker would outlive it and keep the port).

**Stopping.** As `serve`: SIGTERM first drains for `drain_s` (`/readyz` answers 503
`draining`, requests are still served), then granian stops its worker (killed if it has
not stopped 10 s later, as `serve` gives requests in flight 10 s); SIGINT and a second
signal stop at once. What differs: the drain starts when the supervisor gets SIGTERM
(the process a container runtime or Kubernetes signals); a SIGTERM sent to the worker
itself stops it at once. Certificates are read when the server starts: a renewed
certificate needs a restart (uvicorn's contexts reload renewed files,
`flotilla_kit.tls.reload_changed_certificates`).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from granian.constants import HTTPModes, Interfaces, RuntimeModes
from granian.log import LogLevels
from granian.server import MPServer

from flotilla_kit.health import Drain
from flotilla_kit.logs import get_logger
from flotilla_kit.settings import ServiceSettings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["ServedWsgiApp", "WsgiChassis", "serve_wsgi"]

_log = get_logger("flotilla.server")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_GRACEFUL_S = 10  # as `serve`'s uvicorn timeout_graceful_shutdown
# granian's own loggers through the root logger, so its lines are ECS lines too.
_GRANIAN_LOGGERS: dict[str, Any] = {
    "loggers": {
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": [], "propagate": True},
    }
}


class WsgiChassis(Protocol):
    """What a kit WSGI app owns beside its framework (`flotilla_kit.wsgi.Chassis`)."""

    @property
    def drain(self) -> Drain: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class ServedWsgiApp(Protocol):
    """A WSGI app with the kit's chassis (`flotilla_kit.flask.FlotillaFlask`,
    `flotilla_kit.django.FlotillaDjango`)."""

    @property
    def chassis(self) -> WsgiChassis: ...

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]: ...


class _DrainingGranian(MPServer):
    """granian's supervisor, with a drain period between SIGTERM and the stop."""

    def __init__(self, *args: Any, drain: Drain, drain_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drain = drain
        self._drain_s = drain_s
        self._drain_timer: threading.Timer | None = None

    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
        signum = args[0] if args else None
        if signum == signal.SIGTERM and self._drain_timer is None and self._drain_s > 0:
            # In the signal handler: start the drain, stop when it ends.
            self._drain.start()
            _log.info("draining", seconds_left=self._drain_s)
            self._drain_timer = threading.Timer(self._drain_s, self._stop)
            self._drain_timer.daemon = True
            self._drain_timer.start()
            return
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        self._stop()

    def _stop(self) -> None:
        super().signal_handler_interrupt()  # type: ignore[no-untyped-call]


def _log_level(settings: ServiceSettings) -> LogLevels:
    return LogLevels(settings.log_level)


def _die_with(supervisor: int) -> None:
    """In the worker: be killed when the supervisor dies, however it dies. granian's
    worker outlives a SIGKILLed supervisor (it is reparented and goes on serving and
    consuming, holding the port the restarted instance needs), so the worker asks Linux for
    SIGKILL at its parent's death (`PR_SET_PDEATHSIG`; granian forks workers from its main
    thread, whose end is the process's). Elsewhere there is no such request: a launcher
    must stop the whole process group there."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        _log.warning("cannot ask to die with the supervisor", errno=ctypes.get_errno())
    if os.getppid() != supervisor:  # it died before the request was made
        os._exit(1)


def serve_wsgi(app: ServedWsgiApp, settings: ServiceSettings, *, threads: int = 8) -> None:
    """Serve `app` on `settings.host:port` until SIGTERM (after the drain) or SIGINT.
    `threads`: how many requests run the app at once."""
    # The worker must inherit the app: a spawned worker would have to import it again
    # and could not be handed a closure (Python 3.14 makes forkserver the default).
    if multiprocessing.get_start_method(allow_none=True) != "fork":
        multiprocessing.set_start_method("fork", force=True)
    tls = settings.tls
    server = _DrainingGranian(
        settings.service_name,  # names the app in granian's logs; the loader below gives it
        address=settings.host,
        port=settings.port,
        interface=Interfaces.WSGI,
        workers=1,
        runtime_threads=1,
        runtime_mode=RuntimeModes.st,
        blocking_threads=threads,
        http=HTTPModes.http1,
        websockets=False,
        log_level=_log_level(settings),
        log_dictconfig=_GRANIAN_LOGGERS,
        log_access=False,
        workers_kill_timeout=_GRACEFUL_S,
        ssl_cert=tls.cert_file if tls.enabled else None,
        ssl_key=tls.key_file if tls.enabled else None,
        ssl_ca=tls.ca_file if tls.enabled else None,
        ssl_client_verify=tls.enabled and tls.ca_file is not None and tls.require_client_cert,
        drain=app.chassis.drain,
        drain_s=settings.drain_s,
    )

    supervisor = os.getpid()

    def load() -> ServedWsgiApp:  # in the worker, after the fork
        _die_with(supervisor)
        app.chassis.start()
        return app

    default_worker: Callable[..., None] = MPServer._spawn_wsgi_worker

    def worker(*args: Any, **kwargs: Any) -> None:
        try:
            default_worker(*args, **kwargs)
        finally:
            app.chassis.stop()

    server.serve(spawn_target=worker, target_loader=load, wrap_loader=False)
