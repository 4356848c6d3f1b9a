"""`python -m flotilla_payments` (or `flotilla-payments`): serve, relay, migrate, in-doubt,
and the audit log's verify and tail."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer

from flotilla_kit.clock import utc_now
from flotilla_kit.db import Database
from flotilla_kit.service_cli import Relay, quiet_settings, service_cli
from flotilla_payments.adapters.audit import AUDIT_LOG
from flotilla_payments.adapters.tables import outbox
from flotilla_payments.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_payments.bootstrap import build_app, migrate
from flotilla_payments.domain.events import SERVICE
from flotilla_payments.entrypoints.schemas import InDoubtTransferOut
from flotilla_payments.service_layer import use_cases
from flotilla_payments.settings import PaymentsSettings

__all__ = ["app", "main"]

app = service_cli(
    PaymentsSettings,
    help="The Flotilla payments service. Settings come from FLOTILLA_* environment variables.",
    serve_help="Run one instance of the HTTP API (and its recovery loop) until SIGTERM.",
    build_app=build_app,
    migrate=migrate,
    relay=Relay(
        outbox,
        SERVICE,
        help="Publish the outbox's events to NATS JetStream (FLOTILLA_NATS_URL) until "
        "SIGTERM;\none relay per payments database.",
    ),
    audit_log=AUDIT_LOG,
)


async def _in_doubt(settings: PaymentsSettings, older_than_s: float) -> list[dict[str, Any]]:
    database = Database(settings.sqlalchemy_url)
    now = utc_now()
    try:
        async with SqlUnitOfWorkFactory(database)(write=False) as uow:
            found = await use_cases.unfinished_transfers(uow, now=now, older_than_s=older_than_s)
    finally:
        await database.dispose()
    return [InDoubtTransferOut.of_unfinished(t, now).model_dump(mode="json") for t in found]


@app.command("in-doubt")
def in_doubt(
    older_than: Annotated[
        float,
        typer.Option(
            "--older-than",
            min=0,
            max=use_cases.MAX_OLDER_THAN_S,
            help="Only those created at least S seconds ago.",
        ),
    ] = 0.0,
) -> None:
    """Print the transfers not yet committed or aborted as JSON lines, oldest first."""
    settings = quiet_settings(PaymentsSettings)
    for line in asyncio.run(_in_doubt(settings, older_than)):
        sys.stdout.write(json.dumps(line) + "\n")


def main() -> None:
    app()
