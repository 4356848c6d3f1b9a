"""`python -m flotilla_payments` (or `flotilla-payments`): serve, relay, migrate, in-doubt,
and the audit log's verify and tail."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from typing import Annotated, Any

import typer

from flotilla_kit.db import Database
from flotilla_kit.logs import configure_logging
from flotilla_kit.server import serve as run_server
from flotilla_kit.settings import load_settings
from flotilla_kit.tracing import install_tracing
from flotilla_payments.adapters.audit import AUDIT_LOG
from flotilla_payments.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_payments.bootstrap import build_app, migrate, relay
from flotilla_payments.domain import Transfer
from flotilla_payments.entrypoints.schemas import TransferOut
from flotilla_payments.service_layer import use_cases
from flotilla_payments.settings import PaymentsSettings

__all__ = ["app", "main"]

app = typer.Typer(
    help="The Flotilla payments service. Settings come from FLOTILLA_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
)


def _quiet_settings() -> PaymentsSettings:
    settings = load_settings(PaymentsSettings)
    configure_logging(settings.service_name, settings.instance_id, "warning", sys.stderr)
    return settings


@app.command()
def serve() -> None:
    """Run one instance of the HTTP API (and its recovery loop) until SIGTERM."""
    settings = load_settings(PaymentsSettings)
    configure_logging(settings.service_name, settings.instance_id, settings.log_level)
    install_tracing(settings)
    run_server(build_app(settings), settings)


@app.command("relay")
def relay_command() -> None:
    """Publish the outbox's events to NATS JetStream (FLOTILLA_NATS_URL) until SIGTERM;
    one relay per payments database."""
    settings = load_settings(PaymentsSettings)
    configure_logging(settings.service_name, f"relay-{settings.instance_id}", settings.log_level)
    install_tracing(settings)
    relay(settings)


@app.command("migrate")
def migrate_command() -> None:
    """Upgrade the database to the newest schema."""
    migrate(_quiet_settings())


def _in_doubt_line(transfer: Transfer, now: dt.datetime) -> dict[str, Any]:
    def at(moment: dt.datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        **TransferOut.of(transfer).model_dump(mode="json"),
        "initiator": transfer.initiator,
        "age_s": round((now - transfer.created_at).total_seconds(), 3),
        "attempts": transfer.attempts,
        "next_attempt_at": at(transfer.next_attempt_at),
        "lease_owner": transfer.lease_owner,
        "lease_until": at(transfer.lease_until),
    }


async def _in_doubt(settings: PaymentsSettings, older_than_s: float) -> list[dict[str, Any]]:
    database = Database(settings.sqlalchemy_url)
    now = dt.datetime.now(dt.UTC)
    try:
        async with SqlUnitOfWorkFactory(database)(write=False) as uow:
            found = await use_cases.unfinished_transfers(uow, now=now, older_than_s=older_than_s)
    finally:
        await database.dispose()
    return [_in_doubt_line(t, now) for t in found]


@app.command("in-doubt")
def in_doubt(
    older_than: Annotated[
        float,
        typer.Option("--older-than", min=0, help="Only those created at least S seconds ago."),
    ] = 0.0,
) -> None:
    """Print the transfers not yet committed or aborted as JSON lines, oldest first."""
    settings = _quiet_settings()
    for line in asyncio.run(_in_doubt(settings, older_than)):
        sys.stdout.write(json.dumps(line) + "\n")


@app.command("audit-verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; print a JSON report; exit 1 if it is broken."""
    settings = _quiet_settings()
    report = asyncio.run(AUDIT_LOG.report(settings.sqlalchemy_url, settings.service_name))
    sys.stdout.write(json.dumps(report) + "\n")
    if not report["intact"]:
        raise typer.Exit(1)


@app.command("audit-tail")
def audit_tail(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many records.")] = 20,
) -> None:
    """Print the newest audit records as JSON lines, oldest first."""
    settings = _quiet_settings()
    for record in asyncio.run(AUDIT_LOG.newest(settings.sqlalchemy_url, limit)):
        sys.stdout.write(json.dumps(record) + "\n")


def main() -> None:
    app()
