"""The web app in process (httpx over ASGI, as a browser over HTTPS would talk to it)
with its real session store (a SQLite file; a real PostgreSQL too for the store's own
tests, `test_store` and `test_sessions`: the pages do the same on either), calling a stand-in
gateway that is a real HTTPS server (`gateway.py`) whose certificate the app checks
against the tests' dev CA. Time is a `ManualClock`: sessions expire when a test says.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from flotilla_kit.clock import ManualClock
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths
from flotilla_web.bootstrap import build_app
from flotilla_web.entrypoints.sessions import Wiring
from flotilla_web.settings import WebSettings
from services.web.tests.integration.gateway import User, World, gateway_app, serving_https

Pki = Callable[[str], CertificatePaths]
SESSION = "__Host-flotilla_session"
CSRF = "__Host-flotilla_csrf"
PASSWORD = "correct horse battery"
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
_KEY_FIELD = re.compile(r'name="idempotency_key" value="([^"]+)"')


@dataclass
class Site:
    """The running app, the world behind its stand-in gateway, and its clock."""

    app: FastAPI
    world: World
    clock: ManualClock
    settings: WebSettings
    alice_eur: str
    alice_savings: str
    bob_eur: str

    @property
    def wiring(self) -> Wiring:
        wiring: Wiring = self.app.state.wiring
        return wiring

    def browser(self) -> httpx.AsyncClient:
        """A client that keeps cookies, as a browser does (HTTPS, so Secure ones too)."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="https://web.test"
        )


def csrf_of(html: str) -> str:
    found = _CSRF_FIELD.search(html)
    assert found is not None, html
    return found.group(1)


def key_of(html: str) -> str:
    found = _KEY_FIELD.search(html)
    assert found is not None, html
    return found.group(1)


async def log_in(
    browser: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD, **extra: str
) -> httpx.Response:
    form = await browser.get("/login")
    assert form.status_code == 200, form.text
    return await browser.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": csrf_of(form.text),
            **extra,
        },
    )


async def page_csrf(browser: httpx.AsyncClient, path: str = "/accounts") -> str:
    page = await browser.get(path)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite: what a page does does not depend on the database under its sessions."""
    return sqlite_url


def either_database(request: pytest.FixtureRequest) -> str:
    """For `database_url = pytest.fixture(params=["sqlite", "postgres"])(either_database)`
    in the modules about the session store itself."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def gateway_routes() -> list[APIRouter]:
    """More routes for the stand-in gateway: a test module overrides this fixture to add
    the APIs its pages call (`request.state.user` is the caller, token checked)."""
    return []


@pytest.fixture
async def site(
    database_url: str,
    tokens: TokenMinter,
    dev_pki: Pki,
    clock: ManualClock,
    tmp_path: Path,
    gateway_routes: list[APIRouter],
) -> AsyncIterator[Site]:
    world = World(minter=tokens, clock=clock)
    world.users = {
        "alice": User("user-alice", PASSWORD, ["customer"]),
        "bob": User("user-bob", PASSWORD, ["customer"]),
        "sam": User("user-sam", PASSWORD, ["support"]),
    }
    alice_eur = world.open("user-alice", "Everyday", 10_000)
    alice_savings = world.open("user-alice", "Savings", 50)
    bob_eur = world.open("user-bob", "Bob's", 2_500)
    world.products = {
        "prd_apple": {
            "id": "prd_apple", "sku": "APPLE", "name": "Apple", "price_minor": 150,
            "currency": "EUR", "available": 10, "on_hand": 10,
        },
        "prd_pear": {
            "id": "prd_pear", "sku": "PEAR", "name": "Pear", "price_minor": 200,
            "currency": "EUR", "available": 0, "on_hand": 0,
        },
    }  # fmt: skip
    async with AsyncExitStack() as running:
        gateway_url = await running.enter_async_context(
            serving_https(gateway_app(world, gateway_routes), dev_pki("gateway"))
        )
        settings = WebSettings(
            database_url=database_url,
            profile="test",
            var_dir=tmp_path,
            gateway_url=gateway_url,
            gateway_ca_file=dev_pki("gateway").ca,
            gateway_timeout_s=10.0,
        )
        app = build_app(
            settings,
            verifier=tokens.verifier(),
            clock=clock,
            sleep=clock.sleep,
            sweep_sessions=False,
        )
        await running.enter_async_context(app.router.lifespan_context(app))
        yield Site(app, world, clock, settings, alice_eur, alice_savings, bob_eur)


@pytest.fixture
async def browser(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with site.browser() as client:
        yield client


@pytest.fixture
async def alice(site: Site, browser: httpx.AsyncClient) -> httpx.AsyncClient:
    """A browser where alice has logged in."""
    answer = await log_in(browser)
    assert answer.status_code == 303, answer.text
    return browser
