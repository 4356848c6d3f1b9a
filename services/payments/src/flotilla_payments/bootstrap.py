"""The one place where the payments service is wired: settings -> database, ledger client,
coordinator, recovery -> app."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from flotilla_kit.app import Background, create_service_app
from flotilla_kit.audit_api import audit_router
from flotilla_kit.clock import Clock, Sleep, utc_now
from flotilla_kit.db import Database
from flotilla_kit.events import EventMetrics, watch_backlog
from flotilla_kit.faults import ProcessFaults
from flotilla_kit.migrations import upgrade_to_head
from flotilla_kit.service_identity import ServiceTokenProvider
from flotilla_kit.tls import client_context
from flotilla_kit.tokens import TokenVerifier
from flotilla_payments.adapters.audit import AUDIT_LOG
from flotilla_payments.adapters.ledger_client import GrpcLedgerClient, TokenSource
from flotilla_payments.adapters.metrics import PaymentsMetrics
from flotilla_payments.adapters.tables import outbox
from flotilla_payments.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_payments.entrypoints import http
from flotilla_payments.service_layer.coordinator import Coordinator, CoordinatorConfig
from flotilla_payments.service_layer.faults import FaultPoint, NoFaults
from flotilla_payments.service_layer.ports import Faults, LedgerClient
from flotilla_payments.service_layer.recovery import Recovery
from flotilla_payments.settings import PaymentsSettings

__all__ = ["MIGRATIONS", "build_app", "migrate", "service_tokens"]

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(settings: PaymentsSettings) -> None:
    """Blocking: bring the database to the newest schema."""
    upgrade_to_head(settings.sqlalchemy_url, MIGRATIONS)


class _NoTokens:
    async def token(self) -> str:
        raise RuntimeError("TLS is not configured, so this instance has no identity")


def service_tokens(settings: PaymentsSettings) -> TokenSource:
    """This instance's own token (client `payments`), proven with its TLS key."""
    tls = settings.tls
    if tls.cert_file is None or tls.key_file is None or tls.ca_file is None:
        if settings.ledger_shards:
            raise ValueError(
                "calling the ledger needs TLS: set FLOTILLA_TLS_CERT_FILE, KEY_FILE and CA_FILE"
            )
        return _NoTokens()
    return ServiceTokenProvider(
        "payments",
        settings.auth_token_urls,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
        ssl_context=client_context(tls.ca_file, tls.cert_file, tls.key_file),
    )


def build_app(
    settings: PaymentsSettings,
    *,
    verifier: TokenVerifier | None = None,
    ledger: LedgerClient | None = None,
    tokens: TokenSource | None = None,
    clock: Clock = utc_now,
    sleep: Sleep = asyncio.sleep,
    faults: Faults | None = None,
    draw: Callable[[], float] | None = None,
    recover_in_background: bool = True,
) -> FastAPI:
    """The keyword arguments exist for tests: a fake ledger or a token source of their own,
    a clock they move (and its `sleep`), faults that stop a transfer where they say, and
    recovery that runs only when they call `app.state.recovery.tick()`."""
    database = Database(settings.sqlalchemy_url)
    uow = SqlUnitOfWorkFactory(database)
    # Closed in reverse: the coordinator, then the ledger client; the database goes last.
    background = Background()
    background.closer(database.dispose)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings)
        await recovery.release_own_leases()
        yield

    app = create_service_app(
        settings,
        title="Flotilla payments",
        routers=[
            http.router,
            http.in_doubt,
            http.internal,
            audit_router(
                "/api/v1/audit/payments",
                log_name="payments",
                audit_log=AUDIT_LOG,
                database=database,
                clock=clock,
            ),
        ],
        readiness={"database": database.ping},
        lifespan=lifespan,
        verifier=verifier,
        background=background,
    )
    metrics = PaymentsMetrics(app.state.metrics.registry)
    events_metrics = EventMetrics(app.state.metrics.registry)
    if ledger is None:
        grpc_ledger = GrpcLedgerClient(
            settings.ledger_shards,
            tls=settings.tls,
            tokens=tokens or service_tokens(settings),
            timeout_s=settings.rpc_timeout_s,
            on_call=metrics.ledger_call,
        )
        ledger = grpc_ledger
        background.closer(grpc_ledger.close)
    coordinator = Coordinator(
        uow=uow,
        ledger=ledger,
        clock=clock,
        sleep=sleep,
        faults=faults
        or (ProcessFaults(settings.faults, FaultPoint) if settings.faults else NoFaults()),
        metrics=metrics,
        config=CoordinatorConfig(
            instance_id=settings.instance_id,
            shards=frozenset(settings.ledger_shards),
            answer_within_s=settings.answer_within_s,
            prepare_timeout_s=settings.prepare_timeout_s,
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
            lease_s=settings.lease_s,
        ),
        draw=draw or random.random,
    )
    recovery = Recovery(
        coordinator, metrics=metrics, interval_s=settings.recovery_interval_s, sleep=sleep
    )
    background.closer(coordinator.close)
    if recover_in_background:
        background.task(recovery.run, name="payments-recovery")
    background.task(
        partial(watch_backlog, database, outbox, service="payments", metrics=events_metrics),
        name="payments-outbox-backlog",
    )
    app.state.database = database
    app.state.uow = uow
    app.state.clock = clock
    app.state.ledger = ledger
    app.state.coordinator = coordinator
    app.state.recovery = recovery
    app.state.payments_metrics = metrics
    http.install_error_mapping(app)
    return app
