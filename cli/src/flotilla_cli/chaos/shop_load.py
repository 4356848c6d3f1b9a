"""The shop under fire: products (some scarce), customers (some poor) and hundreds of
concurrent checkouts through the gateway, sent the way clients would send them: one
Idempotency-Key per order, the same key again on a 5xx or a lost answer, some orders sent
twice with one key on purpose; then each order polled until it is final."""

from __future__ import annotations

import asyncio
import random
import secrets
import ssl
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from flotilla_cli.chaos.load import Customer, retry_after, set_up_bank

__all__ = ["OrderResult", "Product", "Shop", "run_orders", "set_up_shop"]

_MAX_ATTEMPTS = 60
_FINAL = ("CONFIRMED", "CANCELLED")
_RETRYABLE = (500, 502, 503, 504)


@dataclass(frozen=True)
class Product:
    id: str
    sku: str
    price_minor: int
    initial_on_hand: int
    scarce: bool


@dataclass
class Shop:
    products: list[Product]
    rich: list[Customer]
    poor: list[Customer]
    deposits: dict[str, int]  # payment account -> what the set-up deposited

    @property
    def customers(self) -> list[Customer]:
        return self.rich + self.poor


@dataclass
class OrderResult:
    key: str
    customer: str
    payment_account: str
    lines: list[tuple[str, int]]
    sent_twice: bool  # on purpose, with the same key
    order_ids: set[str] = field(default_factory=set)  # every id an answer named
    state: str = "UNKNOWN"  # as the client last saw it: PENDING, CONFIRMED, CANCELLED
    reason: str | None = None
    statuses: list[int] = field(default_factory=list)
    retries: int = 0  # same key again after a 5xx or a transport error
    refused: str | None = None  # a 4xx problem type: nothing was ordered

    @property
    def order_id(self) -> str | None:
        return next(iter(sorted(self.order_ids)), None)


async def _ok(response: httpx.Response, *expected: int) -> dict[str, Any]:
    if response.status_code not in expected:
        raise RuntimeError(f"{response.request.method} {response.request.url}: "
                           f"{response.status_code} {response.text[:300]}")  # fmt: skip
    body: dict[str, Any] = response.json() if response.content else {}
    return body


# (name, price in minor units, stock on hand, scarce): plenty of three, too little of two,
# so that some orders are cancelled out of stock and most are not.
_CATALOGUE = (
    ("TEA", 650, 10_000, False),
    ("MUG", 1_200, 10_000, False),
    ("LAMP", 4_900, 10_000, False),
    ("POSTER", 3_000, 8, True),
    ("WATCH", 15_000, 5, True),
)


async def set_up_shop(
    client: httpx.AsyncClient,
    admin_password: str,
    *,
    rich: int,
    poor: int,
    rich_deposit_minor: int,
    poor_deposit_minor: int,
) -> Shop:
    """Products made through the admin API (their own, so the run knows their stock),
    customers with one account each: the rich can pay for anything, the poor for little."""
    login = await _ok(
        await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": "ada", "password": admin_password},
        ),
        200,
    )
    admin = {"Authorization": f"Bearer {login['access_token']}"}
    tag = secrets.token_hex(3).upper()
    products: list[Product] = []
    for name, price, on_hand, scarce in _CATALOGUE:
        sku = f"CHAOS-{tag}-{name}"
        made = await _ok(
            await client.post(
                "/api/v1/products",
                json={
                    "sku": sku,
                    "name": f"Chaos {name.lower()}",
                    "price_minor": price,
                    "currency": "EUR",
                    "on_hand": on_hand,
                },
                headers={**admin, "Idempotency-Key": f"chaos-product-{sku}"},
            ),
            201,
        )
        products.append(Product(made["id"], sku, price, int(made["on_hand"]), scarce))
    well_off = await set_up_bank(
        client, admin_password, customers=rich, accounts_each=1, deposit_minor=rich_deposit_minor
    )
    hard_up = await set_up_bank(
        client, admin_password, customers=poor, accounts_each=1, deposit_minor=poor_deposit_minor
    )
    deposits = {a: rich_deposit_minor for _, a in well_off.accounts}
    deposits.update({a: poor_deposit_minor for _, a in hard_up.accounts})
    return Shop(products, well_off.customers, hard_up.customers, deposits)


def _choose(shop: Shop, rng: random.Random) -> tuple[Customer, list[tuple[str, int]]]:
    customer = rng.choice(shop.poor if shop.poor and rng.random() < 0.2 else shop.rich)
    plenty = [p for p in shop.products if not p.scarce]
    scarce = [p for p in shop.products if p.scarce]
    picked = rng.sample(plenty, rng.randint(1, 2))
    if scarce and rng.random() < 0.3:
        picked.append(rng.choice(scarce))
    return customer, [(p.id, rng.randint(1, 3)) for p in picked]


def _problem_type(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return str(response.status_code)
    kind = body.get("type", "") if isinstance(body, dict) else ""
    return str(kind).rsplit("/", 1)[-1] or str(response.status_code)


class _Client:
    """One shared connection pool; counts what every client did besides its requests."""

    def __init__(self, http: httpx.AsyncClient, stats: Counter[str]) -> None:
        self.http = http
        self.stats = stats

    async def post_order(self, result: OrderResult, token: str) -> None:
        """POST until an answer that is not a 5xx (same key every time)."""
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": result.key}
        body = {
            "lines": [{"product_id": p, "quantity": q} for p, q in result.lines],
            "payment_account": result.payment_account,
        }
        delay = 0.1
        for attempt in range(_MAX_ATTEMPTS):
            if attempt:
                result.retries += 1
                await asyncio.sleep(delay)  # backing off before a retry, not awaiting an event
                delay = min(delay * 2, 2.0)
            try:
                response = await self.http.post("/api/v1/orders", json=body, headers=headers)
            except httpx.HTTPError:
                self.stats["transport_errors"] += 1
                continue
            result.statuses.append(response.status_code)
            if response.status_code == 429:
                self.stats["rate_limited"] += 1
                delay = retry_after(response, delay)
                continue
            if response.status_code in _RETRYABLE:
                delay = max(delay, retry_after(response, delay))
                continue
            if response.status_code == 202:
                order = response.json()
                result.order_ids.add(str(order["id"]))
                self._saw(result, order)
                return
            result.refused = _problem_type(response)
            return
        self.stats["gave_up_posting"] += 1

    async def poll(self, result: OrderResult, token: str) -> None:
        """GET the order until it is final (the caller bounds how long)."""
        order_id = result.order_id
        if order_id is None:
            return
        headers = {"Authorization": f"Bearer {token}"}
        delay = 0.2
        while result.state not in _FINAL:
            await asyncio.sleep(delay)  # polling a remote state: there is nothing to await
            delay = min(delay * 1.5, 2.0)
            try:
                response = await self.http.get(f"/api/v1/orders/{order_id}", headers=headers)
            except httpx.HTTPError:
                self.stats["transport_errors"] += 1
                continue
            if response.status_code == 200:
                self._saw(result, response.json())
            elif response.status_code == 429:
                self.stats["rate_limited"] += 1
                delay = retry_after(response, delay)

    @staticmethod
    def _saw(result: OrderResult, order: dict[str, Any]) -> None:
        result.state = str(order["state"])
        result.reason = order.get("reason")


async def _one_order(
    client: _Client, shop: Shop, rng: random.Random, polls: list[asyncio.Task[None]]
) -> OrderResult:
    customer, lines = _choose(shop, rng)
    twice = rng.random() < 0.1
    result = OrderResult(
        key=uuid.uuid4().hex, customer=customer.username, payment_account=customer.accounts[0],
        lines=lines, sent_twice=twice,
    )  # fmt: skip
    if twice and rng.random() < 0.5:
        # Two requests racing with one key (a client that sent again before the answer):
        # one writes the order, the other replays it.
        twin = OrderResult(result.key, result.customer, result.payment_account, lines, True)
        await asyncio.gather(
            client.post_order(result, customer.token), client.post_order(twin, customer.token)
        )
        result.order_ids |= twin.order_ids
        result.statuses += twin.statuses
        result.retries += twin.retries
        result.refused = result.refused or twin.refused
    else:
        await client.post_order(result, customer.token)
        if twice:  # the client "did not hear" the answer: same key, same body again
            await client.post_order(result, customer.token)
    if result.state not in _FINAL:
        polls.append(asyncio.create_task(client.poll(result, customer.token)))
    return result


async def run_orders(
    gateway_url: str,
    tls: ssl.SSLContext,
    shop: Shop,
    *,
    orders: int,
    concurrency: int,
    seed: int,
    final_within_s: float,
    posted: asyncio.Event | None = None,
) -> tuple[list[OrderResult], Counter[str]]:
    """Send `orders` checkouts, `concurrency` at a time; then wait, at most
    `final_within_s` after the last one was sent, for every order to be final (the ones
    still PENDING then are reported as such). `posted` is set once every order was sent."""
    rng = random.Random(seed)
    stats: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(orders):
        queue.put_nowait(n)
    results: list[OrderResult] = []
    polls: list[asyncio.Task[None]] = []
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=gateway_url, verify=tls, timeout=15.0, limits=limits
    ) as http:
        client = _Client(http, stats)

        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                results.append(await _one_order(client, shop, rng, polls))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if posted is not None:
            posted.set()
        if polls:
            _, late = await asyncio.wait(polls, timeout=final_within_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
    return results, stats
