"""The bank under fire: customers, accounts and thousands of concurrent transfers through
the gateway, the way clients would send them, retrying what they may retry."""

from __future__ import annotations

import asyncio
import random
import secrets
import ssl
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

__all__ = [
    "Bank",
    "Customer",
    "Outcome",
    "TransferResult",
    "one_transfer",
    "run_transfers",
    "set_up_bank",
]

_MAX_ATTEMPTS = 40
_POLL_DEADLINE_S = 60.0


@dataclass
class Customer:
    username: str
    token: str
    accounts: list[str] = field(default_factory=list)


@dataclass
class Bank:
    customers: list[Customer]
    deposited_minor: int  # what the set-up put into the customers' accounts

    @property
    def accounts(self) -> list[tuple[Customer, str]]:
        return [(c, a) for c in self.customers for a in c.accounts]


# What the client was told: committed; rejected (a 4xx but 429: refused, nothing moved); aborted
# (503 naming a transfer: a shard did not answer in time, nothing moved); unknown.
Outcome = Literal["committed", "rejected", "aborted", "unknown"]


@dataclass
class TransferResult:
    key: str
    transfer_id: str | None
    outcome: Outcome
    amount_minor: int
    attempts: int
    retried_on_purpose: bool
    statuses: list[int]


async def _ok(response: httpx.Response, *expected: int) -> dict[str, Any]:
    if response.status_code not in expected:
        raise RuntimeError(f"{response.request.method} {response.request.url}: "
                           f"{response.status_code} {response.text[:300]}")  # fmt: skip
    body: dict[str, Any] = response.json() if response.content else {}
    return body


async def set_up_bank(
    client: httpx.AsyncClient,
    admin_password: str,
    *,
    customers: int,
    accounts_each: int,
    deposit_minor: int,
    roles: tuple[str, ...] = ("customer",),
) -> Bank:
    """Customers made through the admin API (with `roles`), accounts opened by each, cash
    deposited."""
    login = await _ok(
        await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": "ada", "password": admin_password},
        ),
        200,
    )
    admin = {"Authorization": f"Bearer {login['access_token']}"}
    made: list[Customer] = []
    for _ in range(customers):
        username, password = f"chaos{secrets.token_hex(4)}", f"Pw-{uuid.uuid4().hex}"
        await _ok(
            await client.post(
                "/api/v1/auth/users",
                json={"username": username, "password": password, "roles": list(roles)},
                headers=admin,
            ),
            201,
        )
        token = await _ok(
            await client.post(
                "/api/v1/auth/token",
                data={"grant_type": "password", "username": username, "password": password},
            ),
            200,
        )
        customer = Customer(username, token["access_token"])
        for n in range(accounts_each):
            opened = await _ok(
                await client.post(
                    "/api/v1/accounts",
                    json={"name": f"chaos {n}", "currency": "EUR"},
                    headers={"Authorization": f"Bearer {customer.token}"},
                ),
                201,
            )
            customer.accounts.append(opened["id"])
            await _ok(
                await client.post(
                    f"/api/v1/accounts/{opened['id']}/deposits",
                    json={"amount_minor": deposit_minor, "currency": "EUR"},
                    headers={**admin, "Idempotency-Key": f"chaos-deposit-{opened['id']}"},
                ),
                201,
            )
        made.append(customer)
    return Bank(made, customers * accounts_each * deposit_minor)


async def _settle(client: httpx.AsyncClient, headers: dict[str, str], location: str) -> Outcome:
    """Poll a transfer answered 202 until it is final."""
    deadline = time.monotonic() + _POLL_DEADLINE_S
    delay = 0.1
    while time.monotonic() < deadline:
        await asyncio.sleep(delay)  # polling a remote state: there is nothing to await
        delay = min(delay * 2, 1.0)
        try:
            response = await client.get(location, headers=headers)
        except httpx.HTTPError:
            continue
        if response.status_code == 200:
            state = response.json()["state"]
            if state == "committed":
                return "committed"
            if state == "aborted":
                return "rejected"
    return "unknown"


def retry_after(response: httpx.Response, default: float) -> float:
    """The seconds a 429 or 503 asks to wait (at most 5), else `default`."""
    try:
        return min(float(response.headers.get("Retry-After", default)), 5.0)
    except ValueError:
        return default


def _problem(response: httpx.Response) -> dict[str, Any]:
    if response.headers.get("content-type") != "application/problem+json":
        return {}
    body: dict[str, Any] = response.json()
    return body


def _draw_transfer(bank: Bank, rng: random.Random) -> tuple[Customer, dict[str, Any]]:
    """Who sends which transfer: mostly affordable amounts, some that overdraw on purpose."""
    customer, source = rng.choice(bank.accounts)
    target = rng.choice([a for _, a in bank.accounts if a != source])
    roll = rng.random()
    amount = rng.randint(1, 5_000) if roll < 0.85 else rng.randint(50_000, 500_000)
    body = {
        "from_account": source,
        "to_account": target,
        "amount_minor": amount,
        "currency": "EUR",
        "reference": "chaos",
    }
    return customer, body


async def one_transfer(
    client: httpx.AsyncClient, bank: Bank, rng: random.Random, stats: Counter[str]
) -> TransferResult:
    customer, body = _draw_transfer(bank, rng)
    amount = int(body["amount_minor"])
    key = uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {customer.token}", "Idempotency-Key": key}
    on_purpose = rng.random() < 0.1  # sent twice with one key, as a client that timed out
    retry_pending = on_purpose
    statuses: list[int] = []
    outcome: Outcome = "unknown"
    transfer_id: str | None = None
    attempts = 0
    delay = 0.05
    while attempts < _MAX_ATTEMPTS:
        attempts += 1
        try:
            response = await client.post("/api/v1/transfers", json=body, headers=headers)
        except httpx.HTTPError:
            stats["transport_errors"] += 1
            await asyncio.sleep(delay)  # backing off before a retry, not awaiting an event
            delay = min(delay * 2, 1.0)
            continue
        statuses.append(response.status_code)
        status = response.status_code
        if status == 429:
            # The gateway's rate limit answered, not the bank: says nothing about the
            # transfer (the send that was answered before it may have moved the money).
            stats["rate_limited"] += 1
            attempts -= 1
            await asyncio.sleep(retry_after(response, delay))
            continue
        if status == 503 and _problem(response).get("transfer_id"):
            # Aborted for a technical reason (a shard did not answer): final, nothing moved.
            outcome, transfer_id = "aborted", str(_problem(response)["transfer_id"])
            break
        if status in (502, 503, 504):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        data = response.json()
        if status == 201:
            outcome, transfer_id = "committed", data["id"]
        elif status == 202:
            transfer_id = data["id"]
            outcome = await _settle(client, headers, f"/api/v1/transfers/{transfer_id}")
        elif 400 <= status < 500:
            outcome = "rejected"
        else:
            continue
        if retry_pending:
            retry_pending = False
            continue  # the client "did not hear" the answer: same key, same body again
        break
    return TransferResult(key, transfer_id, outcome, amount, attempts, on_purpose, statuses)


async def run_transfers(
    gateway_url: str,
    tls: ssl.SSLContext,
    bank: Bank,
    *,
    transfers: int,
    concurrency: int,
    seed: int,
) -> tuple[list[TransferResult], Counter[str]]:
    rng = random.Random(seed)
    stats: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(transfers):
        queue.put_nowait(n)
    results: list[TransferResult] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=gateway_url, verify=tls, timeout=15.0, limits=limits
    ) as client:

        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                results.append(await one_transfer(client, bank, rng, stats))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, stats
