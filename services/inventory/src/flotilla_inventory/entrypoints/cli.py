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
from flotilla_inventory.settings import InventorySettings
from flotilla_kit.clock import utc_now
from flotilla_kit.db import Database
from flotilla_kit.service_cli import SEED_OPERATOR, Relay, quiet_settings, service_cli

__all__ = ["app", "main"]

app = service_cli(
    InventorySettings,
    help="The Flotilla inventory service. Settings come from FLOTILLA_* environment variables.",
    serve_help="Run one instance: the HTTP API, the gRPC API (when FLOTILLA_GRPC_PORT is set) "
    "and\nthe sweeper, until SIGTERM (which drains first) or SIGINT.",
    build_app=build_app,
    migrate=migrate,
    relay=Relay(
        outbox,
        SERVICE,
        help="Publish the stock events of the outbox to NATS JetStream (FLOTILLA_NATS_URL), "
        "in\norder, until SIGTERM or SIGINT. Run one per database (not one per instance).",
    ),
    audit_log=AUDIT_LOG,
)


class SeedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    products: list[ProductIn]


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
                            principal=SEED_OPERATOR,
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
    settings = quiet_settings(InventorySettings)
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


def main() -> None:
    app()
