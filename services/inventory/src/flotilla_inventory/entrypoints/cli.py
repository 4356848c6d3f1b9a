"""`python -m flotilla_inventory` (or `flotilla-inventory`): serve, migrate, seed, relay,
and the audit log's verify and tail."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, ValidationError

from flotilla_inventory.adapters.audit import AUDIT_LOG
from flotilla_inventory.adapters.stock_events import SERVICE
from flotilla_inventory.adapters.tables import outbox
from flotilla_inventory.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_inventory.bootstrap import build_app, migrate
from flotilla_inventory.entrypoints.schemas import ProductIn, ProductOut
from flotilla_inventory.service_layer import catalogue
from flotilla_inventory.service_layer.errors import DuplicateSku, InventoryError
from flotilla_inventory.service_layer.reservations import utc_now
from flotilla_inventory.settings import InventorySettings
from flotilla_kit.db import Database
from flotilla_kit.events import run_relay
from flotilla_kit.logs import configure_logging
from flotilla_kit.rbac import permissions_of
from flotilla_kit.server import serve as run_server
from flotilla_kit.settings import load_settings
from flotilla_kit.tokens import Principal
from flotilla_kit.tracing import install_tracing

__all__ = ["app", "main"]

app = typer.Typer(
    help="The Flotilla inventory service. Settings come from FLOTILLA_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
)

# The seed acts with staff rights, as an operator stocking the shelves would.
_OPERATOR = Principal(
    subject="flotilla-seed",
    roles=frozenset({"admin"}),
    token_id="seed",  # noqa: S106 - an id, not a secret
    expires_at=float("inf"),
    permissions=permissions_of(["admin"]),
)


class SeedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    products: list[ProductIn]


@app.command()
def serve() -> None:
    """Run one instance: the HTTP API, the gRPC API (when FLOTILLA_GRPC_PORT is set) and
    the sweeper, until SIGTERM (which drains first) or SIGINT."""
    settings = load_settings(InventorySettings)
    configure_logging(settings.service_name, settings.instance_id, settings.log_level)
    install_tracing(settings)
    run_server(build_app(settings), settings)


@app.command("migrate")
def migrate_command() -> None:
    """Upgrade the database to the newest schema."""
    settings = load_settings(InventorySettings)
    configure_logging(settings.service_name, settings.instance_id, "warning", sys.stderr)
    migrate(settings)


async def _seed(settings: InventorySettings, wanted: SeedFile) -> list[dict[str, Any]]:
    database = Database(settings.sqlalchemy_url)
    uow = SqlUnitOfWorkFactory(database)
    seeded: list[dict[str, Any]] = []
    try:
        for item in wanted.products:
            async with uow() as u:
                product = await u.products.by_sku(item.sku)
                if product is None:
                    try:
                        product = await catalogue.create_product(
                            u,
                            principal=_OPERATOR,
                            sku=item.sku,
                            name=item.name,
                            price_minor=item.price_minor,
                            currency=item.currency,
                            on_hand=item.on_hand,
                            now=utc_now(),
                        )
                    except DuplicateSku:
                        # Another seed (or an admin) added it meanwhile: keep theirs.
                        product = None
                    else:
                        await u.commit()
            if product is None:
                async with uow(write=False) as u:
                    product = await u.products.by_sku(item.sku)
                assert product is not None
            seeded.append(ProductOut.of(product).model_dump(mode="json"))
    finally:
        await database.dispose()
    return seeded


@app.command()
def seed(
    file: Annotated[
        Path,
        typer.Option(
            help="JSON: {'products': [{sku, name, price_minor, currency, on_hand}]}",
            exists=True,
            dir_okay=False,
        ),
    ],
) -> None:
    """Migrate, then make sure the products in FILE exist (idempotent by sku: a product
    already there is kept as it is, stock included).

    Prints the products as JSON on stdout, in the file's order.
    """
    settings = load_settings(InventorySettings)
    configure_logging(settings.service_name, settings.instance_id, "warning", sys.stderr)
    try:
        wanted = SeedFile.model_validate_json(file.read_bytes())
    except ValidationError as exc:
        sys.stderr.write(f"seed refused: {file} is not a seed file:\n{exc}\n")
        raise typer.Exit(2) from exc
    migrate(settings)
    try:
        seeded = asyncio.run(_seed(settings, wanted))
    except InventoryError as exc:  # e.g. an unknown currency
        sys.stderr.write(f"seed refused: {exc}\n")
        raise typer.Exit(1) from exc
    sys.stdout.write(json.dumps({"products": seeded}) + "\n")


@app.command()
def relay() -> None:
    """Publish the stock events of the outbox to NATS JetStream (FLOTILLA_NATS_URL), in
    order, until SIGTERM or SIGINT. Run one per database (not one per instance)."""
    settings = load_settings(InventorySettings)
    configure_logging(settings.service_name, settings.instance_id, settings.log_level)
    install_tracing(settings)
    migrate(settings)
    run_relay(
        database=Database(settings.sqlalchemy_url),
        outbox=outbox,
        nats_url=settings.nats_url,
        service=SERVICE,
    )


@app.command("audit-verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; print a JSON report; exit 1 if it is broken."""
    settings = load_settings(InventorySettings)
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
    settings = load_settings(InventorySettings)
    configure_logging(settings.service_name, settings.instance_id, "warning", sys.stderr)
    for record in asyncio.run(AUDIT_LOG.newest(settings.sqlalchemy_url, limit)):
        sys.stdout.write(json.dumps(record) + "\n")


def main() -> None:
    app()
