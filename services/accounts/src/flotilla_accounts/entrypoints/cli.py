"""`python -m flotilla_accounts` (or `flotilla-accounts`): serve, migrate, seed."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, Field

from flotilla_accounts.adapters.audit import AUDIT_LOG
from flotilla_accounts.bootstrap import build_app, migrate
from flotilla_accounts.domain import Money
from flotilla_accounts.service_layer import use_cases
from flotilla_accounts.service_layer.errors import AccountsError
from flotilla_accounts.service_layer.unit_of_work import AccountsUnitOfWork
from flotilla_accounts.settings import AccountsSettings
from flotilla_kit.db import Database
from flotilla_kit.logs import configure_logging
from flotilla_kit.rbac import permissions_of
from flotilla_kit.server import serve as run_server
from flotilla_kit.settings import load_settings
from flotilla_kit.tokens import Principal
from flotilla_kit.tracing import install_tracing

__all__ = ["app", "main"]

app = typer.Typer(
    help="The Flotilla accounts service. Settings come from FLOTILLA_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
)

# The seed acts with staff rights, as an operator at the counter would.
_OPERATOR = Principal(
    subject="flotilla-seed",
    roles=frozenset({"admin"}),
    token_id="seed",  # noqa: S106 - an id, not a secret
    expires_at=float("inf"),
    permissions=permissions_of(["admin"]),
)


class SeedAccount(BaseModel):
    owner_id: str
    name: str
    currency: str
    balance_minor: int = Field(default=0, ge=0)
    id: str | None = Field(
        default=None,
        description="An id fixed in advance (`acc_<this shard>_<32 hex>`), for accounts "
        "other services are configured with (the shop's); otherwise a new one.",
    )


class SeedFile(BaseModel):
    accounts: list[SeedAccount]


@app.command()
def serve() -> None:
    """Run one instance of the HTTP API until SIGTERM."""
    settings = load_settings(AccountsSettings)
    configure_logging(settings.service_name, settings.instance_id, settings.log_level)
    install_tracing(settings)
    run_server(build_app(settings), settings)


@app.command("migrate")
def migrate_command() -> None:
    """Upgrade the database to the newest schema."""
    settings = load_settings(AccountsSettings)
    configure_logging(settings.service_name, settings.instance_id, "warning", sys.stderr)
    migrate(settings)


async def _seed(settings: AccountsSettings, wanted: SeedFile) -> list[dict[str, Any]]:
    database = Database(settings.sqlalchemy_url)
    created: list[dict[str, Any]] = []
    try:
        for item in wanted.accounts:
            async with AccountsUnitOfWork(database) as uow:
                account = await uow.ledger.find_by_owner_and_name(item.owner_id, item.name)
                if account is None:
                    account = await use_cases.open_account(
                        uow,
                        principal=_OPERATOR,
                        shard=settings.shard,
                        shards=settings.shards,
                        name=item.name,
                        currency=item.currency,
                        owner_id=item.owner_id,
                        account_id=item.id,
                    )
                    if item.balance_minor > 0:
                        _, account = await use_cases.deposit(
                            uow,
                            principal=_OPERATOR,
                            shard=settings.shard,
                            account_id=account.id,
                            amount=Money(item.balance_minor, item.currency),
                            reference="opening deposit",
                        )
                    await uow.commit()
            created.append(
                {
                    "id": account.id,
                    "owner_id": account.owner_id,
                    "name": account.name,
                    "currency": account.currency,
                    "balance_minor": account.balance_minor,
                }
            )
    finally:
        await database.dispose()
    return created


@app.command()
def seed(
    file: Annotated[
        Path, typer.Option(help="JSON: {'accounts': [{owner_id, name, currency, balance_minor}]}")
    ],
) -> None:
    """Migrate, then make sure the accounts in FILE exist (idempotent: by owner and name).
    Every owner's home shard must be this one (FLOTILLA_SHARD of FLOTILLA_SHARDS).

    Prints the accounts as JSON on stdout.
    """
    settings = load_settings(AccountsSettings)
    configure_logging(settings.service_name, settings.instance_id, "warning", sys.stderr)
    wanted = SeedFile.model_validate_json(file.read_bytes())
    migrate(settings)
    try:
        accounts = asyncio.run(_seed(settings, wanted))
    except AccountsError as exc:  # e.g. an owner whose home is another shard
        sys.stderr.write(f"seed refused: {exc}\n")
        raise typer.Exit(1) from exc
    sys.stdout.write(json.dumps({"accounts": accounts}) + "\n")


@app.command("audit-verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; print a JSON report; exit 1 if it is broken."""
    settings = load_settings(AccountsSettings)
    configure_logging(settings.service_name, settings.instance_id, "warning", sys.stderr)
    report = asyncio.run(AUDIT_LOG.report(settings.sqlalchemy_url, settings.service_name))
    sys.stdout.write(json.dumps(report) + "\n")
    if not report["intact"]:
        raise typer.Exit(1)


@app.command("audit-tail")
def audit_tail(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many records.")] = 20,
) -> None:
    """Print the newest audit records as JSON lines, oldest first."""
    settings = load_settings(AccountsSettings)
    configure_logging(settings.service_name, settings.instance_id, "warning", sys.stderr)
    for record in asyncio.run(AUDIT_LOG.newest(settings.sqlalchemy_url, limit)):
        sys.stdout.write(json.dumps(record) + "\n")


def main() -> None:
    app()
