"""The one place where the billing service is wired: settings -> database, VAT rates,
the order events' consumer, the outbox backlog gauge -> the Django REST framework app
(the kit's chassis), whose `lifespan` runs the migrations and the background work in
the serving process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from flotilla_billing.adapters.metrics import BillingMetrics
from flotilla_billing.adapters.tables import outbox
from flotilla_billing.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_billing.domain import VatRates
from flotilla_billing.entrypoints import http
from flotilla_billing.entrypoints.consumers import OrderEvents, orders_consumer, run_consumer
from flotilla_billing.settings import BillingSettings
from flotilla_kit.clock import utc_now
from flotilla_kit.db import Database
from flotilla_kit.django import FlotillaDjango, create_django_app
from flotilla_kit.events import EventMetrics, watch_backlog
from flotilla_kit.migrations import upgrade_to_head
from flotilla_kit.tokens import TokenVerifier

__all__ = ["MIGRATIONS", "build_app", "migrate", "vat_rates"]

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(settings: BillingSettings) -> None:
    """Blocking: bring the database to the newest schema."""
    upgrade_to_head(settings.sqlalchemy_url, MIGRATIONS)


def vat_rates(settings: BillingSettings) -> VatRates:
    return VatRates(default_bp=settings.vat_default_bp, overrides=settings.vat_overrides_bp)


def build_app(
    settings: BillingSettings,
    *,
    verifier: TokenVerifier | None = None,
    retry_initial_s: float = 0.5,
) -> FlotillaDjango:
    """The keyword arguments exist for tests: a verifier of their own keys, and quicker
    retries of an event whose invoice is not there yet."""
    database = Database(settings.sqlalchemy_url)
    uow = SqlUnitOfWorkFactory(database)
    # Made with the app's registry, below.
    events_metrics: list[EventMetrics] = []
    billing_metrics: list[BillingMetrics] = []

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings)
        metrics = events_metrics[0]
        jobs: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            ("billing-outbox-backlog",
             lambda: watch_backlog(database, outbox, service="billing", metrics=metrics)),
        ]  # fmt: skip
        if settings.consumers:
            consumer = orders_consumer(
                database, nats_url=settings.nats_url, metrics=metrics,
                handler=OrderEvents(
                    rates=vat_rates(settings), clock=utc_now, issued=billing_metrics[0].issued
                ),
                retry_initial_s=retry_initial_s,
            )  # fmt: skip
            jobs.append((consumer.name, lambda: run_consumer(consumer)))
        tasks = [asyncio.create_task(job(), name=name) for name, job in jobs]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await database.dispose()

    app = create_django_app(
        settings,
        name="billing",
        urlpatterns=http.urlpatterns(http.Api(uow=uow, seller=settings.seller_name)),
        readiness={"database": database.ping},
        verifier=verifier,
        lifespan=lifespan,
    )
    events_metrics.append(EventMetrics(app.chassis.metrics.registry))
    billing_metrics.append(BillingMetrics(app.chassis.metrics.registry))
    return app
