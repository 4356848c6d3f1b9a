"""An auth app per test, started (migrations, signing key) against a real database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from flotilla_auth.bootstrap import create_app
from flotilla_auth.settings import AuthSettings

from .helpers import MovableClock, cheap_hasher


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> AuthSettings:
    return AuthSettings(
        database_url=database_url,
        var_dir=tmp_path,
        profile="test",
        key_encryption_key=f"test-kek-{secrets.token_hex(16)}",
    )


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def app(settings: AuthSettings, clock: MovableClock) -> AsyncIterator[FastAPI]:
    application = create_app(settings, password_hasher=cheap_hasher(), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as http:
        yield http
