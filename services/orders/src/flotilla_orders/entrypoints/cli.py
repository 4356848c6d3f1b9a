"""`python -m flotilla_orders` (or `flotilla-orders`): serve, migrate, relay."""

from __future__ import annotations

from flotilla_kit.service_cli import Relay, service_cli
from flotilla_orders.adapters.tables import outbox
from flotilla_orders.bootstrap import build_app, migrate
from flotilla_orders.domain import SERVICE
from flotilla_orders.settings import OrdersSettings

__all__ = ["app", "main"]

app = service_cli(
    OrdersSettings,
    help="The Flotilla orders service. Settings come from FLOTILLA_* environment variables.",
    serve_help="Run one instance of the HTTP API (with its sagas and recovery loop) until SIGTERM.",
    build_app=build_app,
    migrate=migrate,
    relay=Relay(
        outbox,
        SERVICE,
        help="Publish the outbox's events to NATS JetStream until SIGTERM (one per database "
        "does;\nmore are safe: JetStream drops the copies).",
    ),
)


def main() -> None:
    app()
