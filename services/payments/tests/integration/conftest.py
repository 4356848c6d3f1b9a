"""The payments app in process (httpx over ASGI) against a real SQLite file and a real
PostgreSQL, calling two fake ledger shards on real gRPC servers over mutual TLS.

Shard 1 is listed with a dead instance first: every cross-shard transfer proves that a
killed instance does not stop progress. Time is a `ManualClock`; recovery runs only when a
test calls `tick()`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from grpc import aio
from sqlalchemy import func, select

from flotilla_kit.clock import ManualClock
from flotilla_kit.db import Query
from flotilla_kit.devservers.ports import free_port
from flotilla_kit.settings import TlsSettings
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths
from flotilla_payments.adapters.tables import audit_events, idempotency_keys, transfers
from flotilla_payments.bootstrap import build_app
from flotilla_payments.service_layer.faults import FaultPoint, NoFaults
from flotilla_payments.service_layer.ports import Faults
from flotilla_payments.settings import PaymentsSettings
from services.payments.tests.fakes import CrashAt, FakeBank
from services.payments.tests.integration.ledger_server import (
    FakeLedgerServicer,
    start_fake_shard,
)

Headers = Callable[..., dict[str, str]]

_WRITTEN_TRANSFERS = Query(
    select(transfers.c.path, transfers.c.state, transfers.c.refusal).order_by(
        transfers.c.created_at
    )
)
_KEYS_AND_AUDIT_RECORDS = [
    Query(select(func.count().label("n")).select_from(t)) for t in (idempotency_keys, audit_events)
]


def tls_of(paths: CertificatePaths) -> TlsSettings:
    return TlsSettings(cert_file=paths.cert, key_file=paths.key, ca_file=paths.ca)


class StaticTokens:
    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token


@dataclass
class Ledger:
    bank: FakeBank
    servicers: dict[int, FakeLedgerServicer]
    targets: dict[int, list[str]]


@pytest.fixture
async def ledger(
    tokens: TokenMinter, dev_pki: Callable[[str], CertificatePaths]
) -> AsyncIterator[Ledger]:
    bank = FakeBank(shards=2)
    servicers = {n: FakeLedgerServicer(shard) for n, shard in bank.shards.items()}
    servers: list[aio.Server] = []
    targets: dict[int, list[str]] = {}
    try:
        for number, servicer in servicers.items():
            server, port = await start_fake_shard(
                servicer, tls=tls_of(dev_pki("accounts")), verifier=tokens.verifier()
            )
            servers.append(server)
            targets[number] = [f"127.0.0.1:{port}"]
        targets[1].insert(0, f"127.0.0.1:{free_port()}")  # a killed instance
        yield Ledger(bank, servicers, targets)
    finally:
        for server in servers:
            await server.stop(None)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> Faults:
    """No faults, unless a test parametrizes it (indirectly) with a fault point at which
    the app's first transfer 'dies'."""
    point: FaultPoint | None = getattr(request, "param", None)
    return CrashAt(point) if point is not None else NoFaults()


@pytest.fixture
def answer_within_s() -> float:
    """Overridden (by parametrizing it) by tests that want the 202 answer."""
    return 5.0


@pytest.fixture
def settings(
    database_url: str,
    ledger: Ledger,
    dev_pki: Callable[[str], CertificatePaths],
    answer_within_s: float,
) -> PaymentsSettings:
    return PaymentsSettings(
        database_url=database_url,
        profile="test",
        instance_id="p-0",
        ledger_shards=ledger.targets,
        tls=tls_of(dev_pki("payments")),
        rpc_timeout_s=5.0,
        answer_within_s=answer_within_s,
        prepare_timeout_s=10.0,
        lease_s=5.0,
    )


@pytest.fixture
async def app(
    settings: PaymentsSettings, tokens: TokenMinter, clock: ManualClock, faults: Faults
) -> AsyncIterator[FastAPI]:
    application = build_app(
        settings,
        verifier=tokens.verifier(),
        tokens=StaticTokens(tokens.mint("service:payments", ["service:payments"], ttl_s=3600)),
        clock=clock,
        sleep=clock.sleep,
        faults=faults,
        recover_in_background=False,
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://payments") as c:
        yield c


@pytest.fixture
def as_user(tokens: TokenMinter) -> Headers:
    def headers(subject: str = "alice", *roles: str, key: str | None = None) -> dict[str, str]:
        token = tokens.mint(subject, list(roles) or ["customer"])
        found = {"Authorization": f"Bearer {token}"}
        if key is not None:
            found["Idempotency-Key"] = key
        return found

    return headers


@pytest.fixture
def accounts(ledger: Ledger) -> dict[str, str]:
    """alice has 10 000 EUR cents on shard 0; bob has empty accounts on both shards."""
    shards = ledger.bank.shards
    return {
        "a0": shards[0].open("alice", 10_000),
        "b0": shards[0].open("bob", 0),
        "b1": shards[1].open("bob", 0),
        "u1": shards[1].open("ulrich", 0, currency="USD"),
    }


@pytest.fixture
def table(app: FastAPI) -> Callable[[], object]:
    """What a request wrote: each transfer's (path, state, refusal), and the number of
    Idempotency-Keys and audit records."""

    async def take() -> tuple[object, ...]:
        async with app.state.database.transaction(write=False) as tx:
            rows = await tx.all(_WRITTEN_TRANSFERS)
            counts = [await tx.scalar(count) for count in _KEYS_AND_AUDIT_RECORDS]
        return (tuple(map(tuple, rows)), *counts)

    return take
