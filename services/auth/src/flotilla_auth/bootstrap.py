"""The one place where settings become adapters, adapters become components, and
components become the HTTP app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI

from flotilla_auth.adapters.key_material import Ed25519KeyMaterial
from flotilla_auth.adapters.passwords import Argon2PasswordHasher
from flotilla_auth.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_auth.domain.signing_keys import SigningKey
from flotilla_auth.domain.token_policy import TokenPolicy
from flotilla_auth.entrypoints import http
from flotilla_auth.service_layer.components import Components
from flotilla_auth.service_layer.ports import Clock, PasswordHasher
from flotilla_auth.service_layer.signing_keys import (
    ensure_active_signing_key,
    published_signing_keys,
)
from flotilla_auth.settings import AuthSettings
from flotilla_kit.app import create_service_app
from flotilla_kit.db import Database
from flotilla_kit.migrations import upgrade_to_head
from flotilla_kit.tokens import JwksCache, TokenVerifier

__all__ = ["MIGRATIONS", "Runtime", "build_runtime", "create_app", "migrate", "open_signing_key"]

MIGRATIONS = Path(__file__).parent / "migrations"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything one process builds from its settings."""

    settings: AuthSettings
    database: Database
    components: Components


def build_runtime(
    settings: AuthSettings,
    *,
    password_hasher: PasswordHasher | None = None,
    clock: Clock | None = None,
) -> Runtime:
    """`password_hasher` and `clock` exist for tests (cheap argon2, a clock to move)."""
    database = Database(settings.sqlalchemy_url)
    components = Components(
        uow=SqlUnitOfWorkFactory(database),
        passwords=password_hasher or Argon2PasswordHasher(),
        keys=Ed25519KeyMaterial(settings.key_encryption_key.get_secret_value().encode()),
        policy=TokenPolicy(
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            access_token_ttl_s=settings.access_token_ttl_s,
            refresh_token_ttl_s=settings.refresh_token_ttl_s,
        ),
        clock=clock or _utc_now,
    )
    return Runtime(settings=settings, database=database, components=components)


def migrate(settings: AuthSettings) -> None:
    """Blocking: bring the database to the newest schema."""
    upgrade_to_head(settings.sqlalchemy_url, MIGRATIONS)


async def open_signing_key(runtime: Runtime) -> SigningKey:
    """Ensure there is an active key and make it this process's signer."""
    components = runtime.components
    key = await ensure_active_signing_key(
        uow=components.uow, keys=components.keys, now=components.clock()
    )
    # Fails loudly at start when the key-encryption key is not the one the key was sealed
    # with, rather than answering every login with an error later.
    components.active_signer = components.keys.signer_for(key)
    return key


def create_app(
    settings: AuthSettings,
    *,
    password_hasher: PasswordHasher | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    runtime = build_runtime(settings, password_hasher=password_hasher, clock=clock)
    components = runtime.components
    # The service verifies its own tokens (for /me) from its own key store: no HTTP to
    # itself, and no start-up ordering problem.
    verifier = TokenVerifier(
        JwksCache([]), issuer=settings.token_issuer, audience=settings.token_audience
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings)
        await open_signing_key(runtime)
        published = await published_signing_keys(uow=components.uow, now=components.clock())
        verifier.jwks.load({"keys": [key.jwk() for key in published]})
        try:
            yield
        finally:
            components.active_signer = None
            await runtime.database.dispose()

    async def signing_key_loaded() -> None:
        _ = components.signer  # raises while no key is loaded

    app = create_service_app(
        settings,
        title="Flotilla auth",
        routers=[http.router, http.well_known],
        readiness={"database": runtime.database.ping, "signing_key": signing_key_loaded},
        lifespan=lifespan,
        verifier=verifier,
    )
    http.install_error_handlers(app)
    app.state.components = components
    return app
