"""The orders app in process (httpx over ASGI) against a real SQLite file and a real
PostgreSQL, calling real servers over mutual TLS: a gRPC inventory, HTTPS payments, two
HTTPS accounts shards, and the auth token endpoint its own token comes from.

A dead instance is listed first for inventory, payments and shard 1: every order proves
that a killed instance does not stop progress. Time is a `ManualClock`; recovery runs only
when a test calls `tick()`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from flotilla_kit.clock import ManualClock
from flotilla_kit.db import Query
from flotilla_kit.devservers.ports import free_port
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths
from flotilla_orders.adapters.tables import idempotency_keys, order_lines, orders
from flotilla_orders.bootstrap import build_app
from flotilla_orders.service_layer.faults import NoFaults
from flotilla_orders.service_layer.ports import Faults
from flotilla_orders.settings import OrdersSettings
from services.orders.tests.fakes import FakeBank, FakeStock
from services.orders.tests.integration.standins import (
    InventoryServicer,
    accounts_app,
    auth_app,
    payments_app,
    serving_https,
    start_inventory,
    tls_of,
)

Pki = Callable[[str], CertificatePaths]
Headers = Callable[..., dict[str, str]]
ORDERS = "/api/v1/orders"


@dataclass
class World:
    """The dependencies' state, shared by the stand-in servers."""

    stock: FakeStock
    bank: FakeBank
    inventory: InventoryServicer
    inventory_targets: list[str]
    payments_urls: list[str]
    payments: FastAPI
    accounts_shards: dict[int, list[str]]
    accounts: dict[int, FastAPI]
    auth_url: str
    auth: FastAPI
    wallet: str  # alice's EUR account, on shard 1
    shop: str  # the shop's, on shard 0


@pytest.fixture
async def world(tokens: TokenMinter, dev_pki: Pki) -> AsyncIterator[World]:
    stock, bank = FakeStock(), FakeBank()
    stock.add("apple", 150, on_hand=10)
    stock.add("pear", 200, on_hand=10)
    stock.add("tea", 300, currency="USD")
    verifier = tokens.verifier()
    servicer = InventoryServicer(stock)
    async with AsyncExitStack() as running:
        server, port = await start_inventory(
            servicer, tls=tls_of(dev_pki("inventory")), verifier=verifier
        )
        running.push_async_callback(server.stop, None)
        payments = payments_app(bank, verifier)
        payments_url = await running.enter_async_context(
            serving_https(payments, dev_pki("payments"))
        )
        accounts = {shard: accounts_app(bank, verifier, shard) for shard in (0, 1)}
        shard_urls = {
            shard: [await running.enter_async_context(serving_https(app, dev_pki("accounts")))]
            for shard, app in accounts.items()
        }
        shard_urls[1].insert(0, f"https://127.0.0.1:{free_port()}")  # a killed instance
        auth = auth_app(tokens)
        auth_url = await running.enter_async_context(serving_https(auth, dev_pki("auth")))
        yield World(
            stock=stock,
            bank=bank,
            inventory=servicer,
            inventory_targets=[f"127.0.0.1:{free_port()}", f"127.0.0.1:{port}"],
            payments_urls=[f"https://127.0.0.1:{free_port()}", payments_url],
            payments=payments,
            accounts_shards=shard_urls,
            accounts=accounts,
            auth_url=auth_url,
            auth=auth,
            wallet=bank.open("alice", 10_000, shard=1),
            shop=bank.open("shop", 0, shard=0),
        )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def answer_within_s() -> float:
    """Overridden (by parametrizing it) by tests that want the answer before the end."""
    return 10.0


@pytest.fixture
def settings(
    database_url: str, world: World, dev_pki: Pki, answer_within_s: float
) -> OrdersSettings:
    return OrdersSettings(
        database_url=database_url,
        profile="test",
        instance_id="o-0",
        inventory_targets=world.inventory_targets,
        payments_urls=world.payments_urls,
        accounts_shards=world.accounts_shards,
        auth_token_urls=[world.auth_url + "/api/v1/auth/token"],
        shop_account=world.shop,
        shop_owner="shop",
        tls=tls_of(dev_pki("orders")),
        answer_within_s=answer_within_s,
        lease_s=5.0,
        payments_timeout_s=4.0,  # a call must fit in a lease
        reserve_within_s=30.0,
        history_consumers=False,  # the tests of the read model start them with a NATS
    )


AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def make_app(settings: OrdersSettings, tokens: TokenMinter, clock: ManualClock) -> AppFactory:
    """Start an instance of the app (its lifespan runs: migrations, own leases released);
    `faults` stop its sagas where a test says, other settings override the fixture's."""

    @asynccontextmanager
    async def running(faults: Faults | None = None, **overrides: Any) -> AsyncIterator[FastAPI]:
        application = build_app(
            settings.model_copy(update=overrides),
            verifier=tokens.verifier(),
            clock=clock,
            sleep=clock.sleep,
            faults=faults or NoFaults(),
            recover_in_background=False,
        )
        async with application.router.lifespan_context(application):
            yield application

    return running


@pytest.fixture
async def app(make_app: AppFactory) -> AsyncIterator[FastAPI]:
    async with make_app() as application:
        yield application


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orders")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as c:
        yield c


@pytest.fixture
def as_user(tokens: TokenMinter) -> Headers:
    def headers(subject: str = "alice", *roles: str, key: str | None = None) -> dict[str, str]:
        token = tokens.mint(subject, list(roles) or ["customer"])
        found = {"Authorization": f"Bearer {token}"}
        if key is not None:
            found["Idempotency-Key"] = key
        return found

    return headers


def order_body(world: World, *lines: tuple[str, int], account: str | None = None) -> dict[str, Any]:
    return {
        "lines": [
            {"product_id": p, "quantity": q} for p, q in (lines or (("apple", 2), ("pear", 1)))
        ],
        "payment_account": account or world.wallet,
    }


async def drive_out(app: FastAPI, clock: ManualClock) -> None:
    """Let the app's drives run to their end, moving the clock over every backoff."""
    while app.state.saga.drives:
        sleeper = asyncio.ensure_future(clock.next_sleep())
        done, _ = await asyncio.wait(
            {*app.state.saga.drives, sleeper}, return_when=asyncio.FIRST_COMPLETED
        )
        if sleeper in done:
            clock.advance(sleeper.result())
        else:
            sleeper.cancel()
            await asyncio.gather(sleeper, *done, return_exceptions=True)


_COUNTS = [
    Query(select(func.count().label("n")).select_from(t))
    for t in (orders, order_lines, idempotency_keys)
]


async def rows(app: FastAPI) -> tuple[int, ...]:
    """How many orders, lines and Idempotency-Keys are stored."""
    async with app.state.database.transaction(write=False) as tx:
        return tuple([int(await tx.scalar(count)) for count in _COUNTS])
