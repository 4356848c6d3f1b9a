"""`python -m flotilla_billing` (or `flotilla-billing`): serve, migrate, relay."""

from __future__ import annotations

from flotilla_billing.adapters.tables import outbox
from flotilla_billing.bootstrap import build_app, migrate
from flotilla_billing.domain import SERVICE
from flotilla_billing.settings import BillingSettings
from flotilla_kit.service_cli import Relay, service_cli

__all__ = ["app", "main"]

app = service_cli(
    BillingSettings,
    help="The Flotilla billing service. Settings come from FLOTILLA_* environment variables.",
    serve_help="Run one instance of the HTTP API (with its order events' consumer) until SIGTERM.",
    build_app=build_app,
    migrate=migrate,
    relay=Relay(
        outbox,
        SERVICE,
        help="Publish the outbox's events (invoice_issued) to NATS JetStream until SIGTERM "
        "(one per database does;\nmore are safe: JetStream drops the copies).",
    ),
)


def main() -> None:
    app()
