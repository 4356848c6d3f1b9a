"""`python -m flotilla_orders` (or `flotilla-orders`): serve, migrate, relay."""

from __future__ import annotations

import sys

import typer

from flotilla_kit.db import Database
from flotilla_kit.events import run_relay
from flotilla_kit.logs import configure_logging
from flotilla_kit.server import serve as run_server
from flotilla_kit.settings import load_settings
from flotilla_kit.tracing import install_tracing
from flotilla_orders.adapters.tables import outbox
from flotilla_orders.bootstrap import build_app, migrate
from flotilla_orders.domain import SERVICE
from flotilla_orders.settings import OrdersSettings

__all__ = ["app", "main"]

app = typer.Typer(
    help="The Flotilla orders service. Settings come from FLOTILLA_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
)


def _quiet_settings() -> OrdersSettings:
    settings = load_settings(OrdersSettings)
    configure_logging(settings.service_name, settings.instance_id, "warning", sys.stderr)
    return settings


@app.command()
def serve() -> None:
    """Run one instance of the HTTP API (with its sagas and recovery loop) until SIGTERM."""
    settings = load_settings(OrdersSettings)
    configure_logging(settings.service_name, settings.instance_id, settings.log_level)
    install_tracing(settings)
    run_server(build_app(settings), settings)


@app.command("migrate")
def migrate_command() -> None:
    """Upgrade the database to the newest schema."""
    migrate(_quiet_settings())


@app.command()
def relay() -> None:
    """Publish the outbox's events to NATS JetStream until SIGTERM (one per database does;
    more are safe: JetStream drops the copies)."""
    settings = load_settings(OrdersSettings)
    configure_logging(settings.service_name, settings.instance_id, settings.log_level)
    install_tracing(settings)
    migrate(settings)  # the outbox must exist before there is anything to publish
    run_relay(
        database=Database(settings.sqlalchemy_url),
        outbox=outbox,
        nats_url=settings.nats_url,
        service=SERVICE,
    )


def main() -> None:
    app()
