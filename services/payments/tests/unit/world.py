"""A world of fakes for the coordinator: the in-memory transfer log, a bank of two ledger
shards behind a ledger port that fails on demand, a clock the test moves, and the real
metrics on a registry of their own."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from flotilla_kit.clock import ManualClock
from flotilla_kit.idempotency import request_fingerprint
from flotilla_kit.testing import principal as who
from flotilla_kit.tokens import Principal
from flotilla_payments.adapters.metrics import PaymentsMetrics
from flotilla_payments.service_layer.coordinator import (
    Coordinator,
    CoordinatorConfig,
    Submission,
    TransferRequest,
)
from flotilla_payments.service_layer.faults import NoFaults
from flotilla_payments.service_layer.ports import Faults
from flotilla_payments.service_layer.recovery import Recovery
from services.payments.tests.fakes import (
    T0,
    FakeBank,
    FakeLedger,
    FakeStore,
    FakeUowFactory,
)


@dataclass
class World:
    store: FakeStore = field(default_factory=FakeStore)
    bank: FakeBank = field(default_factory=FakeBank)
    clock: ManualClock = field(default_factory=lambda: ManualClock(T0))
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    coordinators: list[Coordinator] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ledger = FakeLedger(self.bank)
        self.metrics = PaymentsMetrics(self.registry)
        self.uow = FakeUowFactory(self.store)
        self.alice = who("alice", "customer")
        self.a0 = self.bank.shards[0].open("alice", 10_000)  # alice's, on shard 0
        self.b0 = self.bank.shards[0].open("bob", 0)  # bob's, on shard 0
        self.b1 = self.bank.shards[1].open("bob", 0)  # bob's, on shard 1

    def coordinator(
        self,
        *,
        instance_id: str = "p-0",
        faults: Faults | None = None,
        seed: int = 7,
        **config: Any,
    ) -> Coordinator:
        coordinator = Coordinator(
            uow=self.uow,
            ledger=self.ledger,
            clock=self.clock,
            sleep=self.clock.sleep,
            faults=faults or NoFaults(),
            metrics=self.metrics,
            config=CoordinatorConfig(
                instance_id=instance_id,
                shards=frozenset(self.bank.shards),
                **({"prepare_timeout_s": 10.0, "lease_s": 5.0} | config),
            ),
            draw=random.Random(seed).random,
        )
        self.coordinators.append(coordinator)
        return coordinator

    def recovery(self, coordinator: Coordinator) -> Recovery:
        return Recovery(coordinator, metrics=self.metrics, interval_s=1.0, sleep=self.clock.sleep)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def fingerprint_of(
    *, source: str, target: str, amount: int = 2_500, currency: str = "EUR", reference: str = "rent"
) -> str:
    """What the HTTP layer computes for the same request."""
    body = {
        "from_account": source,
        "to_account": target,
        "amount_minor": amount,
        "currency": currency,
        "reference": reference,
    }
    return request_fingerprint("POST", "/api/v1/transfers", body)


async def send(
    coordinator: Coordinator,
    *,
    source: str,
    target: str,
    amount: int = 2_500,
    currency: str = "EUR",
    key: str | None = "k-1",
    principal: Principal | None = None,
    reference: str = "rent",
) -> Submission:
    return await coordinator.submit(
        principal=principal or who("alice", "customer"),
        request=TransferRequest(source, target, amount, currency, reference),
        idempotency_key=key,
        fingerprint=fingerprint_of(
            source=source, target=target, amount=amount, currency=currency, reference=reference
        ),
    )
