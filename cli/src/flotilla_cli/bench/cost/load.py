"""The bench's customers and the four operations it times, each done the way a client
would do it through the gateway."""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from flotilla_cli.chaos.load import Bank, Customer, set_up_bank
from flotilla_kit.http_client import HttpClient, HttpClientError, HttpResponse
from flotilla_kit.sharding import shard_of

__all__ = [
    "LOAD_TEST_ROLE",
    "OPERATIONS",
    "Load",
    "Phase",
    "Shop",
    "run_phase",
    "set_up",
]

# Operation -> what the table calls it.
OPERATIONS: dict[str, str] = {
    "read": "account read (GET /api/v1/accounts/{id})",
    "local": "local transfer (one shard)",
    "cross": "cross-shard transfer (2PC)",
    "order": "order to CONFIRMED",
}

# The bench's customers also hold this role, which its system's gateway exempts from the
# per-identity rate limit (everyone else keeps it).
LOAD_TEST_ROLE = "load-test"
_DEPOSIT_MINOR = 10**12
_STOCK = 10_000_000  # on hand per product before the load: no order may run out
_TIMEOUT_S = 30.0
_POLL_DEADLINE_S = 60.0
_POLL_FIRST_S, _POLL_MAX_S = 0.05, 0.4


@dataclass(frozen=True)
class Shop:
    bank: Bank
    product_ids: list[str]


@dataclass
class Phase:
    """What one operation's measured seconds gave: only operations started after the
    warm-up count."""

    operation: str
    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_sample: str | None = None
    polls: int = 0
    seconds: float = 0.0

    def error(self, kind: str, sample: str) -> None:
        self.errors[kind] += 1
        self.error_sample = self.error_sample or sample[:300]


async def _stock_up(client: httpx.AsyncClient, admin: dict[str, str]) -> list[str]:
    """The catalogue's product ids, each with at least `_STOCK` available."""
    response = await client.get("/api/v1/products", params={"limit": 100})
    response.raise_for_status()
    products: list[dict[str, Any]] = response.json()["items"]
    if not products:
        raise RuntimeError("the catalogue is empty: no demo products were seeded")
    for product in products:
        missing = _STOCK - int(product["available"])
        if missing > 0:
            adjusted = await client.post(
                f"/api/v1/products/{product['id']}/stock-adjustments",
                json={"delta": missing, "reason": "bench cost"},
                headers={**admin, "Idempotency-Key": uuid.uuid4().hex},
            )
            if adjusted.status_code != 200:
                raise RuntimeError(f"stock of {product['sku']}: {adjusted.status_code} "
                                   f"{adjusted.text[:300]}")  # fmt: skip
    return [str(p["id"]) for p in products]


async def set_up(gateway: str, tls: ssl.SSLContext, admin_password: str, customers: int) -> Shop:
    """Customers with one funded account each (made through the admin API), and stock."""
    async with httpx.AsyncClient(base_url=gateway, verify=tls, timeout=_TIMEOUT_S) as client:
        bank = await set_up_bank(
            client, admin_password, customers=customers, accounts_each=1,
            deposit_minor=_DEPOSIT_MINOR, roles=("customer", LOAD_TEST_ROLE),
        )  # fmt: skip
        login = await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": "ada", "password": admin_password},
        )
        login.raise_for_status()
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        product_ids = await _stock_up(client, admin)
    by_shard = Counter(shard_of(a) for _, a in bank.accounts)
    if len(by_shard) < 2 or min(by_shard.values()) < 2:
        raise RuntimeError(
            f"the customers' accounts fell on too few shards ({dict(by_shard)}): "
            "local and cross-shard transfers each need two accounts per shard; run again "
            "or with more --customers"
        )
    return Shop(bank, product_ids)


Operation = Callable[[], Awaitable[tuple[bool, str, str, int]]]


@dataclass
class Load:
    """The operations of one worker, as its customer."""

    shop: Shop
    customer: Customer
    rng: random.Random
    client: HttpClient
    gateway: str

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.customer.token}"}

    def operation(self, name: str) -> Operation:
        return {
            "read": self.read,
            "local": self.local_transfer,
            "cross": self.cross_transfer,
            "order": self.order,
        }[name]

    async def read(self) -> tuple[bool, str, str, int]:
        account = self.customer.accounts[0]
        response = await self.client.get(
            f"{self.gateway}/api/v1/accounts/{account}", headers=self._auth
        )
        return _expect(response, 200)

    def _target(self, *, same_shard: bool) -> str:
        source = self.customer.accounts[0]
        shard = shard_of(source)
        targets = [
            a for _, a in self.shop.bank.accounts
            if a != source and (shard_of(a) == shard) == same_shard
        ]  # fmt: skip
        return self.rng.choice(targets)

    async def local_transfer(self) -> tuple[bool, str, str, int]:
        return await self._transfer(self._target(same_shard=True))

    async def cross_transfer(self) -> tuple[bool, str, str, int]:
        return await self._transfer(self._target(same_shard=False))

    async def _transfer(self, target: str) -> tuple[bool, str, str, int]:
        body = {
            "from_account": self.customer.accounts[0],
            "to_account": target,
            "amount_minor": 1,
            "currency": "EUR",
            "reference": "bench",
        }
        headers = {**self._auth, "Idempotency-Key": uuid.uuid4().hex}
        response = await self.client.post(
            f"{self.gateway}/api/v1/transfers", headers=headers, json=body
        )
        if response.status_code != 202:
            return _expect(response, 201)
        # Not final within payments' own wait: poll it as a client would.
        location = response.headers.get("location", "")
        return await self._poll(location, ("preparing", "committing"), "committed")

    async def order(self) -> tuple[bool, str, str, int]:
        count = self.rng.randint(1, min(3, len(self.shop.product_ids)))
        lines = [
            {"product_id": p, "quantity": 1} for p in self.rng.sample(self.shop.product_ids, count)
        ]
        body = {"lines": lines, "payment_account": self.customer.accounts[0]}
        headers = {**self._auth, "Idempotency-Key": uuid.uuid4().hex}
        response = await self.client.post(
            f"{self.gateway}/api/v1/orders", headers=headers, json=body
        )
        if response.status_code != 202:
            return False, str(response.status_code), response.text, 0
        order = response.json()
        if order["state"] == "CONFIRMED":
            return True, "", "", 0
        if order["state"] != "PENDING":
            return False, f"{order['state']}:{order.get('reason')}", str(order), 0
        location = response.headers.get("location", f"/api/v1/orders/{order['id']}")
        return await self._poll(location, ("PENDING",), "CONFIRMED")

    async def _poll(
        self, location: str, pending: tuple[str, ...], done: str
    ) -> tuple[bool, str, str, int]:
        path = urlsplit(location).path
        deadline = time.monotonic() + _POLL_DEADLINE_S
        delay, polls = _POLL_FIRST_S, 0
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)  # a state held by the server: nothing to await here
            delay = min(delay * 2, _POLL_MAX_S)
            polls += 1
            response = await self.client.get(f"{self.gateway}{path}", headers=self._auth)
            if response.status_code != 200:
                continue
            state = response.json()["state"]
            if state not in pending:
                if state == done:
                    return True, "", "", polls
                return False, state, response.text, polls
        return False, "still-pending", location, polls


def _expect(response: HttpResponse, status: int) -> tuple[bool, str, str, int]:
    if response.status_code == status:
        return True, "", "", 0
    return False, str(response.status_code), response.text, 0


async def run_phase(
    *,
    gateway: str,
    tls: ssl.SSLContext,
    shop: Shop,
    operation: str,
    concurrency: int,
    warmup_s: float,
    seconds: float,
    on_measure: Callable[[], None],
    seed: int = 7,
) -> Phase:
    """`concurrency` workers, each as its own customer on its own connection, repeat the
    operation for warm-up plus measured seconds; `on_measure` is called when the measured
    seconds begin (the CPU sample)."""
    phase = Phase(operation, concurrency)
    # One kept-alive connection per worker (the client keeps as many as are in flight).
    client = HttpClient(ssl_context=tls, timeout_s=_TIMEOUT_S)
    customers = shop.bank.customers
    measure_from = time.monotonic() + warmup_s
    stop_at = measure_from + seconds

    async def worker(number: int) -> None:
        rng = random.Random(seed + number)  # noqa: S311 - picks targets, not secrets
        act = Load(shop, customers[number % len(customers)], rng, client, gateway).operation(
            operation
        )
        while (began := time.monotonic()) < stop_at:
            try:
                ok, kind, sample, polls = await act()
            except (HttpClientError, ValueError) as exc:
                ok, kind, sample, polls = False, type(exc).__name__, repr(exc), 0
            if began < measure_from:
                continue
            phase.polls += polls
            if ok:
                phase.latencies_s.append(time.monotonic() - began)
            else:
                phase.error(kind, sample)

    async def start_measuring() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        on_measure()

    metering = asyncio.create_task(start_measuring())
    try:
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    finally:
        await client.aclose()
    await metering
    phase.seconds = time.monotonic() - measure_from
    return phase
