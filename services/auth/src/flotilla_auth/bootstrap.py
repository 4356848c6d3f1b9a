"""The one place where settings become adapters, adapters become components, and
components become the HTTP app (with the per-instance maintenance timer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from flotilla_auth.adapters.client_assertions import X509ClientAssertionVerifier
from flotilla_auth.adapters.common_passwords import default_password_policy
from flotilla_auth.adapters.key_material import Ed25519KeyMaterial
from flotilla_auth.adapters.passwords import Argon2PasswordHasher
from flotilla_auth.adapters.tables import audit_log
from flotilla_auth.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_auth.domain.login_protection import LoginProtection
from flotilla_auth.domain.signing_keys import KeySchedule, SigningKey
from flotilla_auth.domain.token_policy import TokenPolicy
from flotilla_auth.entrypoints import http, users_api
from flotilla_auth.service_layer.components import Components
from flotilla_auth.service_layer.ports import PasswordHasher
from flotilla_auth.service_layer.sessions import forget_expired_records, revoked_sessions
from flotilla_auth.service_layer.signing_keys import (
    KeyRing,
    ensure_active_signing_key,
    rotate_signing_keys,
)
from flotilla_auth.settings import AuthSettings
from flotilla_kit.app import Background, create_service_app
from flotilla_kit.audit_api import audit_router
from flotilla_kit.clock import Clock, utc_now
from flotilla_kit.db import Database
from flotilla_kit.logs import get_logger
from flotilla_kit.migrations import upgrade_to_head
from flotilla_kit.tokens import JwksCache, TokenVerifier

__all__ = [
    "MIGRATIONS",
    "Maintenance",
    "Runtime",
    "build_runtime",
    "create_app",
    "migrate",
    "open_signing_key",
]

MIGRATIONS = Path(__file__).parent / "migrations"

_log = get_logger("flotilla.auth.maintenance")


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
        password_policy=default_password_policy(),
        keys=Ed25519KeyMaterial(settings.key_encryption_key.get_secret_value().encode()),
        key_schedule=KeySchedule(
            publish_delay_s=settings.key_publish_delay_s,
            rotation_period_s=settings.key_rotation_period_s,
            access_token_ttl_s=settings.access_token_ttl_s,
        ),
        policy=TokenPolicy(
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            access_token_ttl_s=settings.access_token_ttl_s,
            refresh_token_ttl_s=settings.refresh_token_ttl_s,
        ),
        protection=LoginProtection(
            account_max_failures=settings.login_account_max_failures,
            account_window_s=settings.login_account_window_s,
            lockout_base_s=settings.login_lockout_base_s,
            lockout_max_s=settings.login_lockout_max_s,
            ip_max_failures=settings.login_ip_max_failures,
            ip_window_s=settings.login_ip_window_s,
        ),
        # Assertions are addressed to us by our issuer name (the kit's provider uses it).
        client_assertions=X509ClientAssertionVerifier.from_ca_file(
            settings.tls.ca_file, audience=settings.token_issuer
        ),
        clock=clock or utc_now,
        system_actor=f"system:{settings.service_name}-{settings.instance_id}",
    )
    return Runtime(settings=settings, database=database, components=components)


def migrate(settings: AuthSettings) -> None:
    """Blocking: bring the database to the newest schema."""
    upgrade_to_head(settings.sqlalchemy_url, MIGRATIONS)


async def open_signing_key(runtime: Runtime, *, actor: str | None = None) -> SigningKey:
    """Ensure there is an active key and make it this process's signer."""
    components = runtime.components
    key = await ensure_active_signing_key(
        uow=components.uow,
        keys=components.keys,
        now=components.clock(),
        actor=actor or components.system_actor,
    )
    # Fails loudly at start when the key-encryption key is not the one the key was sealed
    # with, rather than answering every login with an error later.
    components.active_signer = components.keys.signer_for(key)
    return key


class Maintenance:
    """What each instance does on its own timer, against the database all instances share:
    promote a staged key that is due, stage a successor on schedule, sign with whatever key
    is active now, publish (and verify `/me` against) the keys that should be published,
    load the revoked sessions into its own verifier, and forget expired counters.

    Tests call `tick()` after moving their clock; `run()` is the loop the lifespan starts.
    """

    def __init__(self, components: Components, verifier: TokenVerifier, interval_s: float) -> None:
        self._components = components
        self._verifier = verifier
        self._interval_s = interval_s

    async def tick(self) -> KeyRing:
        parts = self._components
        now = parts.clock()
        ring = await rotate_signing_keys(
            uow=parts.uow,
            keys=parts.keys,
            now=now,
            schedule=parts.key_schedule,
            actor=parts.system_actor,
        )
        signer = parts.active_signer
        if signer is None or signer.kid != ring.active.kid:
            parts.active_signer = parts.keys.signer_for(ring.active)
            _log.info("now signing with", kid=ring.active.kid)
        self._verifier.jwks.load({"keys": [key.jwk() for key in ring.published]})
        self._verifier.revocations.load(await revoked_sessions(uow=parts.uow, now=now))
        await forget_expired_records(uow=parts.uow, now=now)
        return ring

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.tick()
            except Exception as exc:  # the timer must outlive a bad tick
                # A database hiccup: keep signing with the key we have, try again later.
                _log.warning("maintenance tick failed", error=repr(exc))


def create_app(
    settings: AuthSettings,
    *,
    password_hasher: PasswordHasher | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    runtime = build_runtime(settings, password_hasher=password_hasher, clock=clock)
    components = runtime.components
    # The service verifies its own tokens (for /me and the admin API) from its own key
    # store: no HTTP to itself, and no start-up ordering problem. The maintenance timer
    # keeps its keys and revoked sessions current.
    verifier = TokenVerifier(
        JwksCache([]), issuer=settings.token_issuer, audience=settings.token_audience
    )
    maintenance = Maintenance(components, verifier, settings.key_check_interval_s)
    background = Background()
    background.closer(runtime.database.dispose)
    background.task(maintenance.run, name="auth-maintenance")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings)
        await open_signing_key(runtime)
        await maintenance.tick()
        try:
            yield
        finally:
            components.active_signer = None

    async def signing_key_loaded() -> None:
        _ = components.signer  # raises while no key is loaded

    app = create_service_app(
        settings,
        title="Flotilla auth",
        routers=[
            http.router,
            users_api.router,
            http.internal,
            http.well_known,
            audit_router(
                "/api/v1/audit/auth",
                log_name="auth",
                audit_log=audit_log,
                database=runtime.database,
                clock=components.clock,
            ),
        ],
        readiness={"database": runtime.database.ping, "signing_key": signing_key_loaded},
        lifespan=lifespan,
        verifier=verifier,
        background=background,
    )
    http.install_error_handlers(app)
    app.state.components = components
    app.state.maintenance = maintenance
    return app
