"""The one place where the accounts service is wired: settings -> database, participant,
recovery, gRPC server -> app."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from flotilla_accounts.adapters import HttpCoordinator, PrometheusParticipantMetrics
from flotilla_accounts.adapters.audit import AUDIT_LOG
from flotilla_accounts.adapters.unit_of_work import AccountsUnitOfWork
from flotilla_accounts.entrypoints.grpc import LedgerService, start_ledger_server
from flotilla_accounts.entrypoints.http import install_error_mapping, router
from flotilla_accounts.service_layer.participant import Participant
from flotilla_accounts.service_layer.recovery import Recovery
from flotilla_accounts.settings import AccountsSettings
from flotilla_kit.app import Background, create_service_app
from flotilla_kit.audit_api import audit_router
from flotilla_kit.clock import Clock, utc_now
from flotilla_kit.db import Database
from flotilla_kit.migrations import upgrade_to_head
from flotilla_kit.service_identity import ServiceTokenProvider
from flotilla_kit.tls import client_context
from flotilla_kit.tokens import TokenVerifier

__all__ = ["MIGRATIONS", "build_app", "migrate"]

MIGRATIONS = Path(__file__).parent / "migrations"
# In-flight ledger calls get this long to finish when the service stops.
_GRPC_GRACE_S = 5.0
_COORDINATOR_TIMEOUT_S = 3.0


def migrate(settings: AccountsSettings) -> None:
    upgrade_to_head(settings.sqlalchemy_url, MIGRATIONS)


def _coordinator(settings: AccountsSettings) -> HttpCoordinator | None:
    """The payments coordinator, asked with this service's own token over mutual TLS;
    None when no payments URL is configured."""
    if not settings.payments_urls:
        return None
    tls = settings.tls
    if tls.cert_file is None or tls.key_file is None or tls.ca_file is None:
        raise ValueError(
            "asking payments about in-doubt transfers needs TLS: set FLOTILLA_TLS_CERT_FILE, "
            "FLOTILLA_TLS_KEY_FILE and FLOTILLA_TLS_CA_FILE"
        )
    if not settings.auth_token_urls:
        raise ValueError("asking payments needs a token: set FLOTILLA_AUTH_TOKEN_URLS")
    ssl_context = client_context(tls.ca_file, tls.cert_file, tls.key_file)
    tokens = ServiceTokenProvider(
        "accounts",
        settings.auth_token_urls,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
        ssl_context=ssl_context,
    )
    return HttpCoordinator(
        settings.payments_urls, tokens, ssl_context=ssl_context, timeout_s=_COORDINATOR_TIMEOUT_S
    )


def build_app(
    settings: AccountsSettings,
    *,
    verifier: TokenVerifier | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    coordinator = _coordinator(settings)
    database = Database(settings.sqlalchemy_url)
    # Closed in reverse: recovery stops, then the gRPC server drains, then the coordinator
    # client closes; the database goes last.
    background = Background()
    background.closer(database.dispose)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings)
        if coordinator is not None:
            await background.enter(coordinator)
        if settings.grpc_port:
            server, port = await start_ledger_server(
                LedgerService(participant, app.state.token_verifier),
                tls=settings.tls,
                verifier=app.state.token_verifier,
                address=f"{settings.host}:{settings.grpc_port}",
            )
            app.state.grpc_port = port
            background.closer(partial(server.stop, _GRPC_GRACE_S))
        yield

    app = create_service_app(
        settings,
        title="Flotilla accounts",
        routers=[
            router,
            # Each shard keeps its own log; the gateway sends a request for a shard's log
            # to that shard's instances.
            audit_router(
                "/api/v1/audit/accounts/{shard}",
                log_name=f"accounts-s{settings.shard}",
                audit_log=AUDIT_LOG,
                database=database,
                shard=settings.shard,
                clock=clock,
            ),
        ],
        readiness={"database": database.ping},
        lifespan=lifespan,
        verifier=verifier,
        background=background,
    )
    metrics = PrometheusParticipantMetrics(
        app.state.metrics.registry, service=settings.service_name, shard=settings.shard
    )
    participant = Participant(
        partial(AccountsUnitOfWork, database, clock=clock),
        shard=settings.shard,
        metrics=metrics,
        clock=clock,
    )
    recovery = Recovery(
        participant,
        coordinator,
        in_doubt_after=dt.timedelta(seconds=settings.branch_in_doubt_after_s),
        metrics=metrics,
    )
    if settings.grpc_port or coordinator is not None:
        background.task(
            partial(recovery.run, settings.recovery_interval_s), name="accounts-recovery"
        )
    app.state.database = database
    app.state.participant = participant
    app.state.recovery = recovery
    app.state.grpc_port = None
    install_error_mapping(app)
    return app
