"""A world of fakes for the checkout and the saga: the in-memory order store, a stock of
products behind the inventory port, a bank behind the payments and accounts ports, a
clock the test moves, and the real metrics on a registry of their own."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from flotilla_kit.clock import ManualClock
from flotilla_kit.idempotency import request_fingerprint
from flotilla_kit.testing import principal as who
from flotilla_kit.tokens import Principal
from flotilla_orders.adapters.metrics import OrdersMetrics
from flotilla_orders.domain import Order
from flotilla_orders.service_layer.checkout import (
    Checkout,
    CheckoutConfig,
    OrderRequest,
    Placement,
)
from flotilla_orders.service_layer.faults import NoFaults
from flotilla_orders.service_layer.ports import Faults
from flotilla_orders.service_layer.recovery import Recovery
from flotilla_orders.service_layer.refunds import Refund, Refunds
from flotilla_orders.service_layer.saga import Saga, SagaConfig
from services.orders.tests.fakes import (
    T0,
    FakeAccounts,
    FakeBank,
    FakeInventory,
    FakePayments,
    FakeStock,
    FakeStore,
    FakeUowFactory,
)

Lines = tuple[tuple[str, int], ...]


@dataclass
class Instance:
    """One process of the orders service, as far as the saga is concerned."""

    saga: Saga
    checkout: Checkout
    recovery: Recovery
    refunds: Refunds


@dataclass
class World:
    store: FakeStore = field(default_factory=FakeStore)
    stock: FakeStock = field(default_factory=FakeStock)
    bank: FakeBank = field(default_factory=FakeBank)
    clock: ManualClock = field(default_factory=lambda: ManualClock(T0))
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    instances: list[Instance] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.inventory = FakeInventory(self.stock)
        self.payments = FakePayments(self.bank)
        self.accounts = FakeAccounts(self.bank)
        self.metrics = OrdersMetrics(self.registry)
        self.uow = FakeUowFactory(self.store)
        self.alice = who("alice", "customer")
        self.support = who("sam", "support")
        self.wallet = self.bank.open("alice", 10_000)  # alice's EUR account
        self.shop = self.bank.open("shop", 0)
        self.apple = self.stock.add("apple", 150, on_hand=10)
        self.pear = self.stock.add("pear", 200, on_hand=10)

    def instance(
        self,
        instance_id: str = "o-0",
        *,
        faults: Faults | None = None,
        seed: int = 7,
        answer_within_s: float = 0.0,
        **config: Any,
    ) -> Instance:
        faults = faults or NoFaults()
        saga = Saga(
            uow=self.uow,
            inventory=self.inventory,
            payments=self.payments,
            clock=self.clock,
            sleep=self.clock.sleep,
            faults=faults,
            metrics=self.metrics,
            config=SagaConfig(
                instance_id=instance_id,
                **({"lease_s": 5.0, "max_payment_attempts": 3, "reservation_hold_s": 60} | config),
            ),
            draw=random.Random(seed).random,
        )
        checkout = Checkout(
            uow=self.uow,
            inventory=self.inventory,
            accounts=self.accounts,
            saga=saga,
            clock=self.clock,
            faults=faults,
            metrics=self.metrics,
            config=CheckoutConfig(
                shop_account=self.shop,
                shop_owner="shop",
                reserve_within_s=30.0,
                answer_within_s=answer_within_s,
            ),
        )
        recovery = Recovery(saga, metrics=self.metrics, interval_s=1.0, sleep=self.clock.sleep)
        refunds = Refunds(
            uow=self.uow, saga=saga, clock=self.clock, faults=faults,
            answer_within_s=answer_within_s,
        )  # fmt: skip
        made = Instance(saga, checkout, recovery, refunds)
        self.instances.append(made)
        return made

    async def place(
        self,
        instance: Instance,
        lines: Lines = (("apple", 2), ("pear", 1)),
        *,
        account: str | None = None,
        key: str | None = "k-1",
        principal: Principal | None = None,
    ) -> Placement:
        account = account or self.wallet
        return await instance.checkout.place(
            principal=principal or self.alice,
            request=OrderRequest(lines=lines, payment_account=account),
            idempotency_key=key,
            fingerprint=fingerprint_of(lines, account),
        )

    async def refund(
        self, instance: Instance, order: Order, *, principal: Principal | None = None
    ) -> Refund:
        return await instance.refunds.refund(
            principal=principal or self.support, order_id=str(order.id)
        )

    async def drive_out(self, *instances: Instance) -> None:
        """Let the drives of these instances run to their end, moving the clock over every
        backoff they sleep through."""
        while True:
            drives = {task for i in instances for task in i.saga.drives}
            if not drives:
                return
            sleeper = asyncio.ensure_future(self.clock.next_sleep())
            done, _ = await asyncio.wait({*drives, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            if sleeper in done:
                self.clock.advance(sleeper.result())
            else:
                sleeper.cancel()
                await asyncio.gather(sleeper, return_exceptions=True)
                await asyncio.gather(*done, return_exceptions=True)

    def order(self, order_id: uuid.UUID | None = None) -> Order:
        if order_id is None:
            (only,) = self.store.orders.values()
            return only
        return self.store.orders[order_id]

    def events(self) -> list[tuple[str, str]]:
        return [(e.event, e.subject) for e in self.store.events]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def fingerprint_of(lines: Lines, account: str) -> str:
    """What the HTTP layer computes for the same request."""
    body = {
        "lines": [{"product_id": p, "quantity": q} for p, q in lines],
        "payment_account": account,
    }
    return request_fingerprint("POST", "/api/v1/orders", body)
