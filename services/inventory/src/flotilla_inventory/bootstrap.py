"""The one place where the inventory service is wired: settings -> database, reservation
desk, sweeper, gRPC server -> app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from flotilla_inventory.adapters import PrometheusInventoryMetrics, SqlUnitOfWorkFactory
from flotilla_inventory.adapters.audit import AUDIT_LOG
from flotilla_inventory.adapters.tables import outbox
from flotilla_inventory.entrypoints.grpc import InventoryRpc, start_inventory_server
from flotilla_inventory.entrypoints.http import install_error_mapping, products, reservations
from flotilla_inventory.service_layer.reservations import ReservationDesk
from flotilla_inventory.service_layer.sweeper import Sweeper
from flotilla_inventory.settings import InventorySettings
from flotilla_kit.app import Background, create_service_app
from flotilla_kit.audit_api import audit_router
from flotilla_kit.clock import Clock, utc_now
from flotilla_kit.db import Database
from flotilla_kit.events import EventMetrics, watch_backlog
from flotilla_kit.migrations import upgrade_to_head
from flotilla_kit.tokens import TokenVerifier

__all__ = ["MIGRATIONS", "build_app", "migrate"]

MIGRATIONS = Path(__file__).parent / "migrations"
# In-flight reservation calls get this long to finish when the service stops.
_GRPC_GRACE_S = 5.0


def migrate(settings: InventorySettings) -> None:
    """Blocking: bring the database to the newest schema."""
    upgrade_to_head(settings.sqlalchemy_url, MIGRATIONS)


def build_app(
    settings: InventorySettings,
    *,
    verifier: TokenVerifier | None = None,
    clock: Clock = utc_now,
    sweep_in_background: bool = True,
) -> FastAPI:
    """The keyword arguments exist for tests: a verifier of their own, a clock they
    move, and a sweeper that runs only when they call `app.state.sweeper.tick()`."""
    database = Database(settings.sqlalchemy_url)
    uow = SqlUnitOfWorkFactory(database)
    # Closed in reverse: the sweeper stops, then the gRPC server drains; the database goes
    # last.
    background = Background()
    background.closer(database.dispose)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings)
        if settings.grpc_port:
            server, port = await start_inventory_server(
                rpc,
                tls=settings.tls,
                verifier=app.state.token_verifier,
                address=f"{settings.host}:{settings.grpc_port}",
            )
            app.state.grpc_port = port

            async def stop_grpc() -> None:
                rpc.close()  # new calls: UNAVAILABLE; streams finish what they started
                await server.stop(_GRPC_GRACE_S)

            background.closer(stop_grpc)
        yield

    app = create_service_app(
        settings,
        title="Flotilla inventory",
        routers=[
            products,
            reservations,
            audit_router(
                "/api/v1/audit/inventory",
                log_name="inventory",
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
    metrics = PrometheusInventoryMetrics(app.state.metrics.registry, service=settings.service_name)
    events_metrics = EventMetrics(app.state.metrics.registry)
    desk = ReservationDesk(
        uow,
        default_hold_s=settings.reservation_hold_s,
        max_hold_s=settings.max_hold_s,
        metrics=metrics,
        clock=clock,
    )
    sweeper = Sweeper(desk, batch=settings.sweep_batch)
    if sweep_in_background:
        background.task(partial(sweeper.run, settings.sweep_interval_s), name="inventory-sweeper")
    background.task(
        partial(watch_backlog, database, outbox, service="inventory", metrics=events_metrics),
        name="inventory-outbox-backlog",
    )
    rpc = InventoryRpc(desk, metrics, window=settings.stream_window)
    app.state.database = database
    app.state.uow = uow
    app.state.clock = clock
    app.state.desk = desk
    app.state.sweeper = sweeper
    app.state.rpc = rpc
    app.state.grpc_port = None
    install_error_mapping(app)
    return app
