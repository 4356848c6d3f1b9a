"""The one place where the orders service is wired: settings -> database, inventory,
payments and accounts clients, checkout, saga, recovery, the history's consumers -> app."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from flotilla_kit.app import Background, create_service_app
from flotilla_kit.clock import Clock, Sleep, utc_now
from flotilla_kit.db import Database
from flotilla_kit.events import EventMetrics, watch_backlog
from flotilla_kit.faults import ProcessFaults
from flotilla_kit.http_client import HttpClient
from flotilla_kit.migrations import upgrade_to_head
from flotilla_kit.service_identity import ServiceTokenProvider
from flotilla_kit.tls import client_context
from flotilla_kit.tokens import TokenVerifier
from flotilla_orders.adapters.accounts_client import HttpAccounts
from flotilla_orders.adapters.inventory_client import GrpcInventoryClient
from flotilla_orders.adapters.metrics import OrdersMetrics
from flotilla_orders.adapters.payments_client import HttpPayments
from flotilla_orders.adapters.tables import outbox
from flotilla_orders.adapters.tokens import NoTokens, TokenSource
from flotilla_orders.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_orders.entrypoints import http
from flotilla_orders.entrypoints.consumers import history_consumers, run_consumer
from flotilla_orders.service_layer.checkout import Checkout, CheckoutConfig
from flotilla_orders.service_layer.faults import FaultPoint, NoFaults
from flotilla_orders.service_layer.ports import Accounts, Faults, Inventory, Payments
from flotilla_orders.service_layer.recovery import Recovery
from flotilla_orders.service_layer.refunds import Refunds
from flotilla_orders.service_layer.saga import Saga, SagaConfig
from flotilla_orders.settings import OrdersSettings

__all__ = ["MIGRATIONS", "build_app", "migrate", "service_tokens"]

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(settings: OrdersSettings) -> None:
    """Blocking: bring the database to the newest schema."""
    upgrade_to_head(settings.sqlalchemy_url, MIGRATIONS)


def service_tokens(settings: OrdersSettings) -> TokenSource:
    """This instance's own token (client `orders`), proven with its TLS key."""
    tls = settings.tls
    if tls.cert_file is None or tls.key_file is None or tls.ca_file is None:
        return NoTokens()  # the settings refuse remote dependencies without TLS
    return ServiceTokenProvider(
        "orders",
        settings.auth_token_urls,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
        ssl_context=client_context(tls.ca_file, tls.cert_file, tls.key_file),
    )


def _http_client(settings: OrdersSettings) -> HttpClient:
    """One set of kept-alive connections per process for payments and accounts, over
    mutual TLS."""
    tls = settings.tls
    context = client_context(tls.ca_file, tls.cert_file, tls.key_file) if tls.ca_file else None
    return HttpClient(ssl_context=context, timeout_s=settings.http_timeout_s)


def build_app(
    settings: OrdersSettings,
    *,
    verifier: TokenVerifier | None = None,
    tokens: TokenSource | None = None,
    inventory: Inventory | None = None,
    payments: Payments | None = None,
    accounts: Accounts | None = None,
    clock: Clock = utc_now,
    sleep: Sleep = asyncio.sleep,
    faults: Faults | None = None,
    draw: Callable[[], float] | None = None,
    recover_in_background: bool = True,
) -> FastAPI:
    """The keyword arguments exist for tests: fakes or a token source of their own, a
    clock they move (and its `sleep`), faults that stop a saga where they say, and
    recovery that runs only when they call `app.state.recovery.tick()`."""
    database = Database(settings.sqlalchemy_url)
    uow = SqlUnitOfWorkFactory(database)
    own_tokens = tokens or service_tokens(settings)
    client = _http_client(settings)
    grpc_inventory: GrpcInventoryClient | None = None
    # Closed in reverse: the sagas stop (recovery resumes them after a restart), then the
    # clients close; the database goes last.
    background = Background()
    background.closer(database.dispose)
    background.closer(client.aclose)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings)
        await recovery.release_own_leases()
        yield

    app = create_service_app(
        settings,
        title="Flotilla orders",
        routers=[http.router, http.history_router],
        readiness={"database": database.ping},
        lifespan=lifespan,
        verifier=verifier,
        background=background,
    )
    metrics = OrdersMetrics(app.state.metrics.registry)
    events_metrics = EventMetrics(app.state.metrics.registry)
    if inventory is None:
        grpc_inventory = GrpcInventoryClient(
            settings.inventory_targets,
            tls=settings.tls,
            tokens=own_tokens,
            timeout_s=settings.rpc_timeout_s,
            on_call=lambda method, result: metrics.remote_call("inventory", method, result),
        )
        inventory = grpc_inventory
    if payments is None:
        payments = HttpPayments(
            settings.payments_urls,
            tokens=own_tokens,
            client=client,
            timeout_s=settings.payments_timeout_s,
            on_call=lambda method, result: metrics.remote_call("payments", method, result),
        )
    if accounts is None:
        accounts = HttpAccounts(
            settings.accounts_shards,
            tokens=own_tokens,
            client=client,
            timeout_s=settings.http_timeout_s,
            on_call=lambda method, result: metrics.remote_call("accounts", method, result),
        )
    if faults is None:
        faults = ProcessFaults(settings.faults, FaultPoint) if settings.faults else NoFaults()
    saga = Saga(
        uow=uow,
        inventory=inventory,
        payments=payments,
        clock=clock,
        sleep=sleep,
        faults=faults,
        metrics=metrics,
        config=SagaConfig(
            instance_id=settings.instance_id,
            lease_s=settings.lease_s,
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
            max_payment_attempts=settings.max_payment_attempts,
            reservation_hold_s=settings.reservation_hold_s,
        ),
        draw=draw or random.random,
    )
    checkout = Checkout(
        uow=uow,
        inventory=inventory,
        accounts=accounts,
        saga=saga,
        clock=clock,
        faults=faults,
        metrics=metrics,
        config=CheckoutConfig(
            shop_account=settings.shop_account,
            shop_owner=settings.shop_owner,
            reserve_within_s=settings.reserve_within_s,
            answer_within_s=settings.answer_within_s,
        ),
    )
    refunds = Refunds(
        uow=uow, saga=saga, clock=clock, faults=faults, answer_within_s=settings.answer_within_s
    )
    recovery = Recovery(saga, metrics=metrics, interval_s=settings.recovery_interval_s, sleep=sleep)
    app.state.database = database
    app.state.uow = uow
    app.state.saga = saga
    app.state.checkout = checkout
    app.state.refunds = refunds
    app.state.recovery = recovery
    app.state.orders_metrics = metrics
    app.state.consumers = history_consumers(
        database,
        nats_url=settings.nats_url,
        metrics=events_metrics,
    )
    if grpc_inventory is not None:
        background.closer(grpc_inventory.close)
    background.closer(saga.close)
    if recover_in_background:
        background.task(recovery.run, name="orders-recovery")
    if settings.history_consumers:
        for consumer in app.state.consumers:
            background.task(partial(run_consumer, consumer), name=consumer.name)
    background.task(
        partial(watch_backlog, database, outbox, service="orders", metrics=events_metrics),
        name="orders-outbox-backlog",
    )
    http.install_error_mapping(app)
    return app
