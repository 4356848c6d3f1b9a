"""The one place where the accounts service is wired: settings -> database -> app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from flotilla_accounts.entrypoints.http import install_error_mapping, router
from flotilla_accounts.settings import AccountsSettings
from flotilla_kit.app import create_service_app
from flotilla_kit.db import Database
from flotilla_kit.migrations import upgrade_to_head
from flotilla_kit.tokens import TokenVerifier

__all__ = ["MIGRATIONS", "build_app", "migrate"]

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(settings: AccountsSettings) -> None:
    upgrade_to_head(settings.sqlalchemy_url, MIGRATIONS)


def build_app(settings: AccountsSettings, *, verifier: TokenVerifier | None = None) -> FastAPI:
    database = Database(settings.sqlalchemy_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings)
        yield
        await database.dispose()

    app = create_service_app(
        settings,
        title="Flotilla accounts",
        routers=[router],
        readiness={"database": database.ping},
        lifespan=lifespan,
        verifier=verifier,
    )
    app.state.database = database
    install_error_mapping(app)
    return app
