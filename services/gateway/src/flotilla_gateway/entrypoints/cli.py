"""`python -m flotilla_gateway serve` (or `flotilla-gateway serve`): run until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal

import typer
import uvloop

from flotilla_gateway.bootstrap import build_gateway
from flotilla_gateway.settings import GatewaySettings
from flotilla_kit.logs import configure_logging, get_logger
from flotilla_kit.settings import load_settings
from flotilla_kit.tracing import install_tracing, uninstall_tracing

__all__ = ["app", "main"]

app = typer.Typer(
    help="Flotilla gateway: the single HTTPS entry point to the services.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _commands() -> None:
    """Flotilla gateway: the single HTTPS entry point to the services."""


@app.command()
def serve() -> None:
    """Serve until SIGTERM (after a drain of `drain_s`) or SIGINT; settings come from
    FLOTILLA_* environment variables."""
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.instance_id, settings.log_level)
    install_tracing(settings)
    try:
        uvloop.run(_serve(settings))
    except OSError as error:  # the port is taken, a certificate cannot be read, ...
        get_logger("flotilla.gateway").error("cannot start", error=str(error))
        raise typer.Exit(1) from error


async def _serve(settings: GatewaySettings) -> None:
    log = get_logger("flotilla.gateway")
    gateway = build_gateway(settings)
    signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    await gateway.start()
    # Everything built so far lives as long as the process: out of the collector's sight,
    # so its collections scan only what requests allocate.
    gc.collect()
    gc.freeze()
    first = await signals.get()
    if first == signal.SIGTERM and settings.drain_s > 0:
        # Load balancers in front (a Kubernetes Service) see `/readyz` fail and stop
        # sending; what still comes is served. A second signal cuts the drain short.
        gateway.drain.start()
        log.info("draining", seconds=settings.drain_s)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.drain_s):
                await signals.get()
    log.info("stopping: finishing requests in flight", grace_s=settings.shutdown_grace_s)
    await gateway.stop()
    uninstall_tracing()  # the spans still queued are written


def main() -> None:
    app()
