"""An inventory instance running for real in the test's event loop: the HTTP API (through
an ASGI transport), the gRPC API on a real port over mutual TLS with real tokens, on a
real SQLite file or PostgreSQL database."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from grpc import aio
from sqlalchemy import bindparam, func, select

from flotilla_inventory.adapters.tables import (
    audit_events,
    idempotency_keys,
    outbox,
    products,
    reservation_lines,
    reservations,
)
from flotilla_inventory.bootstrap import build_app
from flotilla_inventory.settings import InventorySettings
from flotilla_kit.db import Database, Query
from flotilla_kit.devservers.ports import free_port
from flotilla_kit.rpc import bearer, secure_channel
from flotilla_kit.settings import TlsSettings
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths
from flotilla_proto.inventory.v1 import inventory_pb2 as pb
from flotilla_proto.inventory.v1 import inventory_pb2_grpc as pb_grpc

Pki = Callable[[str], CertificatePaths]
TIMEOUT_S = 10.0

_STOCK = Query(
    select(products.c.on_hand, products.c.held).where(products.c.id == bindparam("product_id"))
)
_COUNTS = [
    Query(select(func.count().label("n")).select_from(table))
    for table in (products, reservations, reservation_lines, idempotency_keys, audit_events, outbox)
]
_LEVELS = Query(
    select(
        products.c.id, products.c.name, products.c.price_minor, products.c.on_hand,
        products.c.held, products.c.version,
    ).order_by(products.c.id)
)  # fmt: skip
_STATES = Query(select(reservations.c.id, reservations.c.state).order_by(reservations.c.id))
_EVENTS = Query(select(outbox.c.payload).order_by(outbox.c.seq))


def tls_of(paths: CertificatePaths) -> TlsSettings:
    return TlsSettings(cert_file=paths.cert, key_file=paths.key, ca_file=paths.ca)


def auth(tokens: TokenMinter, subject: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.mint(subject, list(roles))}"}


@dataclass
class Instance:
    app: FastAPI
    http: httpx.AsyncClient
    tokens: TokenMinter
    stub: pb_grpc.InventoryAsyncStub | None = None
    service_auth: tuple[tuple[str, str], ...] = ()
    grpc_channel: aio.Channel | None = None

    @property
    def database(self) -> Database:
        database: Database = self.app.state.database
        return database

    @property
    def grpc(self) -> pb_grpc.InventoryAsyncStub:
        assert self.stub is not None, "started without a gRPC port"
        return self.stub

    @property
    def channel(self) -> aio.Channel:
        assert self.grpc_channel is not None, "started without a gRPC port"
        return self.grpc_channel

    def admin(self, key: str | None = None) -> dict[str, str]:
        headers = auth(self.tokens, "ada", "admin")
        headers["Idempotency-Key"] = key or uuid.uuid4().hex
        return headers

    def orders(self) -> dict[str, str]:
        return auth(self.tokens, "orders", "service:orders")

    async def product(
        self, sku: str = "MUG-1", *, on_hand: int = 10, price_minor: int = 1250
    ) -> str:
        """A new product (made by an admin over the API); its id."""
        created = await self.http.post(
            "/api/v1/products",
            json={"sku": sku, "name": f"Product {sku}", "price_minor": price_minor,
                  "currency": "EUR", "on_hand": on_hand},
            headers=self.admin(),
        )  # fmt: skip
        assert created.status_code == 201, created.text
        product_id: str = created.json()["id"]
        return product_id

    async def stock(self, product_id: str) -> tuple[int, int]:
        """(on hand, held), read from the database."""
        async with self.database.transaction(write=False) as tx:
            row = await tx.first(_STOCK, product_id=product_id)
        assert row is not None, product_id
        return int(row.on_hand), int(row.held)

    async def reserve_rest(
        self, reservation_id: str, *lines: tuple[str, int], hold_s: int = 0
    ) -> httpx.Response:
        return await self.http.post(
            "/internal/v1/reservations",
            json={
                "reservation_id": reservation_id,
                "lines": [{"product_id": p, "quantity": q} for p, q in lines],
                "hold_s": hold_s,
            },
            headers=self.orders(),
        )

    async def reserve(
        self, reservation_id: str, *lines: tuple[str, int], hold_s: int = 0
    ) -> pb.Reservation:
        return await self.grpc.Reserve(
            pb.ReserveRequest(
                reservation_id=reservation_id,
                lines=[pb.Line(product_id=p, quantity=q) for p, q in lines],
                hold_s=hold_s,
            ),
            metadata=self.service_auth,
            timeout=TIMEOUT_S,
        )

    async def commit(self, reservation_id: str) -> pb.Reservation:
        return await self.grpc.Commit(
            pb.ReservationRef(reservation_id=reservation_id),
            metadata=self.service_auth,
            timeout=TIMEOUT_S,
        )

    async def release(self, reservation_id: str) -> pb.Reservation:
        return await self.grpc.Release(
            pb.ReservationRef(reservation_id=reservation_id),
            metadata=self.service_auth,
            timeout=TIMEOUT_S,
        )


async def take_snapshot(database: Database) -> tuple[object, ...]:
    """Everything a request could have changed, to prove a refused one changed nothing."""
    async with database.transaction(write=False) as tx:
        counts = [await tx.scalar(count) for count in _COUNTS]
        stock = await tx.all(_LEVELS)
        states = await tx.all(_STATES)
    return (*counts, tuple(map(tuple, stock)), tuple(map(tuple, states)))


async def stock_events(database: Database) -> list[dict[str, Any]]:
    """The outbox's stock events, in order: (subject, data) of each."""
    async with database.transaction(write=False) as tx:
        rows = await tx.all(_EVENTS)
    return [json.loads(row.payload) for row in rows]


@contextlib.asynccontextmanager
async def running_inventory(
    database_url: str,
    *,
    tokens: TokenMinter,
    dev_pki: Pki | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    sweep_in_background: bool = False,
    **overrides: Any,
) -> AsyncIterator[Instance]:
    """With `dev_pki`, the gRPC API too (server certificate `inventory`, client
    `orders`, the orders service's own token)."""
    grpc_settings: dict[str, Any] = {}
    if dev_pki is not None:
        grpc_settings = {"grpc_port": free_port(), "tls": tls_of(dev_pki("inventory"))}
    settings = InventorySettings(
        database_url=database_url, profile="test", **grpc_settings, **overrides
    )
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    app = build_app(
        settings, verifier=tokens.verifier(), sweep_in_background=sweep_in_background, **extra
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as http:
            instance = Instance(app=app, http=http, tokens=tokens)
            if dev_pki is None:
                yield instance
                return
            channel = secure_channel(f"127.0.0.1:{app.state.grpc_port}", tls_of(dev_pki("orders")))
            try:
                instance.grpc_channel = channel
                instance.stub = pb_grpc.InventoryStub(channel)
                instance.service_auth = bearer(tokens.mint("orders", ["service:orders"]))
                yield instance
            finally:
                await channel.close()
