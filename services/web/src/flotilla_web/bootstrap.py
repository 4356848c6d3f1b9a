"""The one place where the web service is wired: settings -> database, session store,
gateway client, token reader -> the session keeper -> the pages (FastAPI on the kit's
chassis, `flotilla_kit.app.create_service_app`)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from flotilla_kit.app import Background, create_service_app
from flotilla_kit.clock import Clock, Sleep, utc_now
from flotilla_kit.db import Database
from flotilla_kit.logs import get_logger
from flotilla_kit.migrations import upgrade_to_head
from flotilla_kit.tokens import TokenVerifier
from flotilla_web.adapters import GatewayClient, SqlUnitOfWorkFactory, VerifiedTokens
from flotilla_web.adapters.system import console_sources
from flotilla_web.domain import SessionPolicy
from flotilla_web.entrypoints.cookies import Cookies
from flotilla_web.entrypoints.http import ROUTERS, install
from flotilla_web.entrypoints.rendering import Pages
from flotilla_web.entrypoints.sessions import Wiring
from flotilla_web.entrypoints.static import load_static
from flotilla_web.service_layer.sessions import SessionKeeper
from flotilla_web.settings import WebSettings

__all__ = ["MIGRATIONS", "build_app", "migrate"]

MIGRATIONS = Path(__file__).parent / "migrations"
_log = get_logger("flotilla.web")


def migrate(settings: WebSettings) -> None:
    """Blocking: bring the database to the newest schema."""
    upgrade_to_head(settings.sqlalchemy_url, MIGRATIONS)


def policy_of(settings: WebSettings) -> SessionPolicy:
    return SessionPolicy(
        idle_timeout=dt.timedelta(seconds=settings.session_idle_timeout_s),
        absolute_timeout=dt.timedelta(seconds=settings.session_absolute_timeout_s),
        refresh_before=dt.timedelta(seconds=settings.refresh_before_s),
        touch_every=dt.timedelta(seconds=settings.session_touch_s),
    )


def build_app(
    settings: WebSettings,
    *,
    verifier: TokenVerifier | None = None,
    clock: Clock = utc_now,
    sleep: Sleep = asyncio.sleep,
    sweep_sessions: bool = True,
) -> FastAPI:
    """The keyword arguments exist for tests: a verifier of their own, a clock of theirs,
    and no sweeper (tests call `keeper.sweep()` when they mean to)."""
    database = Database(settings.sqlalchemy_url)
    gateway = GatewayClient(settings)
    background = Background()
    background.closer(database.dispose)
    background.closer(gateway.close)
    uow = SqlUnitOfWorkFactory(database)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings)
        yield

    app = create_service_app(
        settings,
        title="Flotilla web",
        routers=ROUTERS,
        readiness={"database": database.ping},
        lifespan=lifespan,
        verifier=verifier,
        background=background,
    )
    keeper = SessionKeeper(
        uow=uow,
        auth=gateway,
        tokens=VerifiedTokens(app.state.token_verifier),
        policy=policy_of(settings),
        clock=clock,
        sleep=sleep,
    )

    async def sweep() -> None:
        while True:
            await sleep(settings.session_sweep_s)
            try:
                deleted = await keeper.sweep()
            except Exception as error:  # the next round may do better
                _log.warning("sweeping sessions failed", error=repr(error))
            else:
                if deleted:
                    _log.info("sessions swept", deleted=deleted)

    if sweep_sessions:
        background.task(sweep, name="web-session-sweeper")
    app.state.wiring = Wiring(
        settings=settings,
        keeper=keeper,
        uow=uow,
        user_api=gateway.as_user,
        cookies=Cookies(secure=settings.cookie_secure),
    )
    # The operator console's own reads (span files, dead letters, scale requests).
    app.state.console = console_sources(settings)
    app.state.pages = Pages()
    app.state.static_files = load_static()
    install(app)
    return app
