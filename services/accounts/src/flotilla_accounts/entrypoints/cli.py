"""`python -m flotilla_accounts` (or `flotilla-accounts`): serve, migrate, seed, and the
audit log's verify and tail."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, Field

from flotilla_accounts.adapters.audit import AUDIT_LOG
from flotilla_accounts.adapters.unit_of_work import AccountsUnitOfWork
from flotilla_accounts.bootstrap import build_app, migrate
from flotilla_accounts.domain import Money
from flotilla_accounts.service_layer import use_cases
from flotilla_accounts.service_layer.errors import AccountsError
from flotilla_accounts.settings import AccountsSettings
from flotilla_kit.db import Database
from flotilla_kit.service_cli import SEED_OPERATOR, quiet_settings, service_cli

__all__ = ["app", "main"]

app = service_cli(
    AccountsSettings,
    help="The Flotilla accounts service. Settings come from FLOTILLA_* environment variables.",
    serve_help="Run one instance of the HTTP API until SIGTERM.",
    build_app=build_app,
    migrate=migrate,
    audit_log=AUDIT_LOG,
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
                        principal=SEED_OPERATOR,
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
                            principal=SEED_OPERATOR,
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
    settings = quiet_settings(AccountsSettings)
    wanted = SeedFile.model_validate_json(file.read_bytes())
    migrate(settings)
    try:
        accounts = asyncio.run(_seed(settings, wanted))
    except AccountsError as exc:  # e.g. an owner whose home is another shard
        sys.stderr.write(f"seed refused: {exc}\n")
        raise typer.Exit(1) from exc
    sys.stdout.write(json.dumps({"accounts": accounts}) + "\n")


def main() -> None:
    app()
