"""`python -m flotilla_gateway serve` (or `flotilla-gateway serve`): run until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import signal

import typer
import uvloop

from flotilla_gateway.bootstrap import build_gateway
from flotilla_gateway.settings import GatewaySettings
from flotilla_kit.logs import configure_logging, get_logger

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
    """Serve until SIGTERM or SIGINT; settings come from FLOTILLA_* environment variables."""
    settings = GatewaySettings()
    configure_logging("gateway", settings.instance_id, settings.log_level)
    try:
        uvloop.run(_serve(settings))
    except OSError as error:  # the port is taken, a certificate cannot be read, ...
        get_logger("flotilla.gateway").error("cannot start", error=str(error))
        raise typer.Exit(1) from error


async def _serve(settings: GatewaySettings) -> None:
    log = get_logger("flotilla.gateway")
    gateway = build_gateway(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await gateway.start()
    # Everything built so far lives as long as the process: out of the collector's sight,
    # so its collections scan only what requests allocate.
    gc.collect()
    gc.freeze()
    await stop.wait()
    log.info("stopping: draining requests in flight", grace_s=settings.shutdown_grace_s)
    await gateway.stop()


def main() -> None:
    app()
