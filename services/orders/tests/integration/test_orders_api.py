"""The orders HTTP API against real databases, a real gRPC inventory and real HTTPS
payments and accounts (mutual TLS, service tokens from a real token endpoint): an order
end to end, what is refused with nothing written, idempotency, who reads what."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flotilla_kit.clock import ManualClock
from services.orders.tests.integration.conftest import (
    ORDERS,
    Headers,
    World,
    drive_out,
    order_body,
    rows,
)

PROBLEM = "application/problem+json"


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_an_order_is_confirmed_end_to_end(
    client: httpx.AsyncClient, as_user: Headers, world: World
) -> None:
    headers = {**as_user(key="o-1"), "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    response = await client.post(ORDERS, json=order_body(world), headers=headers)
    assert response.status_code == 202, response.text
    order = response.json()
    assert response.headers["location"] == f"{ORDERS}/{order['id']}"
    assert "idempotency-replayed" not in response.headers
    assert {k: order[k] for k in ("customer_id", "state", "reason", "total_minor", "currency")} == {
        "customer_id": "alice", "state": "CONFIRMED", "reason": None,
        "total_minor": 500, "currency": "EUR",
    }  # fmt: skip
    assert order["lines"] == [
        {"product_id": "apple", "quantity": 2, "unit_price_minor": 150},
        {"product_id": "pear", "quantity": 1, "unit_price_minor": 200},
    ]
    assert order["payment_account"] == world.wallet
    assert order["refund_transfer_id"] is None
    # The money moved once, paid by the orders service on alice's behalf.
    (paid,) = world.bank.applied_transfers()
    assert order["payment_transfer_id"] == paid.id
    assert (paid.initiator, paid.to_account, paid.amount_minor) == ("alice", world.shop, 500)
    assert world.bank.calls == [("orders", f"order:{order['id']}:pay:1")]
    assert world.payments.state.on_behalf_of == ["alice"]
    # The saga carries on the request's trace.
    (traceparent,) = world.payments.state.traceparents
    assert traceparent.split("-")[1] == TRACE_ID
    assert world.auth.state.issued == 1  # one service token, cached for every call
    # Stock held with the configured hold, then sold.
    assert world.stock.commits == [order["id"]]
    assert world.inventory.hold_seconds == [120]
    assert world.stock.products["apple"].on_hand == 8
    # The account was checked on the shard its id names (shard 1).
    assert world.accounts[1].state.asked == [world.wallet]
    assert world.accounts[0].state.asked == []
    read = await client.get(response.headers["location"], headers=as_user())
    assert read.status_code == 200
    assert read.json() == order


@pytest.mark.parametrize("answer_within_s", [0.0])
async def test_the_answer_may_come_before_the_saga_ends(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, world: World
) -> None:
    # The saga waits at Reserve until the answer is in: it would otherwise race the answer
    # and, some of the time, have the stock (and the total) held before it.
    world.inventory.reserve_gate = reserve = asyncio.Event()
    response = await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    assert response.status_code == 202
    assert (response.json()["state"], response.json()["total_minor"]) == ("PENDING", None)
    reserve.set()
    await app.state.saga.settle()
    read = await client.get(response.headers["location"], headers=as_user())
    assert read.json()["state"] == "CONFIRMED"


async def test_insufficient_funds_cancels_and_releases_the_stock(
    client: httpx.AsyncClient, as_user: Headers, world: World
) -> None:
    poor = world.bank.open("alice", 499, shard=1)
    response = await client.post(
        ORDERS, json=order_body(world, account=poor), headers=as_user(key="o-1")
    )
    order = response.json()
    assert (order["state"], order["reason"], order["payment_transfer_id"]) == (
        "CANCELLED", "insufficient-funds", None,
    )  # fmt: skip
    assert world.bank.applied == []
    assert world.stock.held() == 0
    assert world.stock.releases == [order["id"]]


async def test_out_of_stock_cancels_without_a_payment(
    client: httpx.AsyncClient, as_user: Headers, world: World
) -> None:
    response = await client.post(
        ORDERS, json=order_body(world, ("apple", 11)), headers=as_user(key="o-1")
    )
    assert (response.json()["state"], response.json()["reason"]) == ("CANCELLED", "out-of-stock")
    assert world.bank.calls == []


@pytest.mark.parametrize("answer_within_s", [0.0])
async def test_an_aborted_payment_and_a_lost_answer_end_in_one_payment(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, world: World, clock: ManualClock
) -> None:
    world.bank.abort_next = 1  # 503 transfer-aborted: a new key next time
    new_transfers: list[str] = []

    def lose_the_answer_to_the_second(reference: str) -> None:
        new_transfers.append(reference)
        if len(new_transfers) == 2:
            world.bank.lose_next = 1  # applied, but answered with a 500

    world.bank.before_transfer = lose_the_answer_to_the_second
    response = await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    order_id = response.json()["id"]
    await drive_out(app, clock)  # each retry waits on the test's clock
    order = (await client.get(f"{ORDERS}/{order_id}", headers=as_user())).json()
    assert order["state"] == "CONFIRMED"
    # The new key after the abort; the same key again while its outcome was unknown.
    assert [key for _, key in world.bank.calls] == [
        f"order:{order_id}:pay:1", f"order:{order_id}:pay:2", f"order:{order_id}:pay:2",
    ]  # fmt: skip
    assert len(world.bank.applied) == 1
    assert world.bank.balance(world.wallet) == 9_500


@dataclass(frozen=True)
class Bad:
    """A request that must be refused with `status` / `slug`, writing nothing."""

    name: str
    request: Callable[[World], dict[str, Any]]  # -> httpx arguments
    status: int
    slug: str
    role: str = "customer"
    key: str | None = "bad-1"
    extra: dict[str, Any] | None = None


def js(
    *lines: tuple[str, Any], account: str | None = None, **extra: Any
) -> Callable[[World], dict[str, Any]]:
    def make(world: World) -> dict[str, Any]:
        body = order_body(world, *lines, account=account)
        return {"json": {**body, **extra}}

    return make


def with_account(account: Callable[[World], str]) -> Callable[[World], dict[str, Any]]:
    return lambda world: {"json": order_body(world, account=account(world))}


def raw_lines(lines: list[Any]) -> Callable[[World], dict[str, Any]]:
    return lambda world: {"json": {"lines": lines, "payment_account": world.wallet}}


BAD_REQUESTS = [
    Bad("no Idempotency-Key", js(), 400, "idempotency-key-required", key=None),
    Bad("unusable Idempotency-Key", js(), 400, "invalid-idempotency-key", key="k" * 129),
    Bad("unknown products", js(("apple", 1), ("kiwi", 1), ("plum", 1)), 422, "unknown-product", extra={"products": ["kiwi", "plum"]}),
    Bad("quantity zero", js(("apple", 0)), 422, "validation-error"),
    Bad("negative quantity", js(("apple", -1)), 422, "validation-error"),
    Bad("quantity over 10000", js(("apple", 10_001)), 422, "validation-error"),
    Bad("fractional quantity", js(("apple", 1.5)), 422, "validation-error"),
    Bad("quantity as a string", js(("apple", "2")), 422, "validation-error"),
    Bad("quantity as a boolean", js(("apple", True)), 422, "validation-error"),
    Bad("no lines", raw_lines([]), 422, "validation-error"),
    Bad("more than 100 lines", raw_lines([{"product_id": f"p{i}", "quantity": 1} for i in range(101)]), 422, "validation-error"),
    Bad("the same product twice", js(("apple", 1), ("apple", 2)), 422, "validation-error"),
    Bad("a product id too long", js(("x" * 65, 1)), 422, "validation-error"),
    Bad("a NUL in a product id", js(("app\u0000le", 1)), 422, "validation-error"),
    Bad("a NUL in the payment account", with_account(lambda w: w.wallet + "\u0000"), 422, "validation-error"),
    Bad("no payment account", lambda w: {"json": {"lines": [{"product_id": "apple", "quantity": 1}]}}, 422, "validation-error"),
    Bad("an unknown field", js(discount_minor=100), 422, "validation-error"),
    Bad("someone else's account", with_account(lambda w: w.bank.open("bob", 10_000, shard=1)), 422, "payment-account-invalid"),
    Bad("someone else's account on another shard", with_account(lambda w: w.bank.open("bob", 10_000, shard=0)), 422, "payment-account-invalid"),
    Bad("an account that does not exist", with_account(lambda w: f"acc_1_{uuid.uuid4().hex}"), 422, "payment-account-invalid"),
    Bad("not an account id", with_account(lambda w: "bob's savings"), 422, "payment-account-invalid"),
    Bad("a shard nobody serves", with_account(lambda w: f"acc_7_{uuid.uuid4().hex}"), 422, "payment-account-invalid"),
    Bad("a bank system account", with_account(lambda w: "sys_0_cash_eur"), 422, "payment-account-invalid"),
    Bad("products in another currency", js(("apple", 1), ("tea", 1)), 422, "currency-mismatch", extra={"products": ["tea"], "account_currency": "EUR"}),
    Bad("an account in another currency", with_account(lambda w: w.bank.open("alice", 10_000, shard=1, currency="USD")), 422, "currency-mismatch"),
    Bad("malformed JSON", lambda w: {"content": b'{"lines": [', "headers": {"content-type": "application/json"}}, 400, "malformed-json"),
    Bad("a form instead of JSON", lambda w: {"data": {"payment_account": w.wallet}}, 415, "unsupported-media-type"),
    Bad("support staff may not order", js(), 403, "forbidden", role="support"),
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[b.name for b in BAD_REQUESTS])
async def test_bad_input_gets_a_problem_and_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, world: World, bad: Bad
) -> None:
    arguments = bad.request(world)
    headers = {**arguments.pop("headers", {}), **as_user("alice", bad.role, key=bad.key)}
    money = world.bank.total()
    response = await client.post(ORDERS, headers=headers, **arguments)
    assert response.status_code == bad.status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"].endswith("/" + bad.slug)
    assert problem["status"] == bad.status
    for name, value in (bad.extra or {}).items():
        assert problem[name] == value
    assert "Traceback" not in response.text
    assert await rows(app) == (0, 0, 0)
    assert world.inventory.calls_of("Reserve") == []
    assert world.bank.calls == []
    assert world.bank.total() == money


@pytest.mark.parametrize("down", ["inventory", "accounts"])
async def test_an_unreachable_dependency_is_a_503_that_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, world: World, down: str
) -> None:
    if down == "inventory":
        world.inventory.down = True
    else:
        world.bank.accounts_down = True
    response = await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["retry-after"] == "1"
    assert response.json()["type"].endswith(f"/{down}-unavailable")
    assert await rows(app) == (0, 0, 0)
    # Once it is back, the same key places the order.
    world.inventory.down = world.bank.accounts_down = False
    again = await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    assert (again.status_code, again.json()["state"]) == (202, "CONFIRMED")


async def test_without_a_token_nothing_is_written(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    response = await client.post(ORDERS, json=order_body(world), headers={"Idempotency-Key": "o-1"})
    assert (response.status_code, response.headers["content-type"]) == (401, PROBLEM)
    assert await rows(app) == (0, 0, 0)


async def test_the_same_key_replays_the_order_and_another_body_is_refused(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, world: World
) -> None:
    first = await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    again = await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    assert again.status_code == 202
    assert again.headers["idempotency-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert again.json() == first.json()
    other = await client.post(
        ORDERS, json=order_body(world, ("apple", 1)), headers=as_user(key="o-1")
    )
    assert (other.status_code, other.json()["type"].rsplit("/", 1)[1]) == (
        422, "idempotency-key-reused",
    )  # fmt: skip
    bobs_wallet = world.bank.open("bob", 10_000, shard=0)
    bobs = await client.post(
        ORDERS, json=order_body(world, account=bobs_wallet), headers=as_user("bob", key="o-1")
    )
    assert bobs.json()["id"] != first.json()["id"]  # keys are per customer
    assert await rows(app) == (2, 4, 2)
    assert len(world.bank.applied) == 2


async def test_customers_read_their_own_orders_and_staff_anyones(
    client: httpx.AsyncClient, as_user: Headers, world: World, clock: ManualClock
) -> None:
    ids = []
    for n in range(3):
        placed = await client.post(
            ORDERS, json=order_body(world, ("apple", 1)), headers=as_user(key=f"o-{n}")
        )
        ids.append(placed.json()["id"])
        clock.advance(1)
    page = await client.get(ORDERS, params={"limit": 2}, headers=as_user())
    assert [o["id"] for o in page.json()["items"]] == ids[::-1][:2]
    rest = await client.get(
        ORDERS, params={"limit": 2, "after": page.json()["next_after"]}, headers=as_user()
    )
    assert ([o["id"] for o in rest.json()["items"]], rest.json()["next_after"]) == ([ids[0]], None)

    bob = as_user("bob")
    assert (await client.get(ORDERS, headers=bob)).json() == {"items": [], "next_after": None}
    theirs = await client.get(f"{ORDERS}/{ids[0]}", headers=bob)
    missing = await client.get(f"{ORDERS}/{uuid.uuid4()}", headers=bob)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["type"] == missing.json()["type"]
    assert theirs.json()["type"].endswith("/order-not-found")
    nosy = await client.get(ORDERS, params={"customer_id": "alice"}, headers=bob)
    assert nosy.status_code == 403

    staff = as_user("sam", "support")
    assert (await client.get(f"{ORDERS}/{ids[0]}", headers=staff)).status_code == 200
    listed = await client.get(ORDERS, params={"customer_id": "alice"}, headers=staff)
    assert len(listed.json()["items"]) == 3
    refusals: list[tuple[dict[str, str | int], int, str]] = [
        ({"after": "not-an-order"}, 400, "invalid-cursor"),
        ({"limit": 0}, 422, "validation-error"),
        ({"limit": 101}, 422, "validation-error"),
    ]
    for params, status, slug in refusals:
        refused = await client.get(ORDERS, params=params, headers=as_user())
        assert (refused.status_code, refused.json()["type"].rsplit("/", 1)[1]) == (status, slug)
    assert (await client.get(ORDERS)).status_code == 401


@pytest.mark.parametrize("answer_within_s", [0.0])
async def test_staff_list_everyones_orders_in_a_state_customers_only_their_own(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, world: World, clock: ManualClock
) -> None:
    def ids(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [o["id"] for o in response.json()["items"]]

    confirmed = await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-0"))
    await app.state.saga.settle()
    world.inventory.reserve_gate = reserve = asyncio.Event()  # the rest stay PENDING
    clock.advance(1)
    alices = await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    clock.advance(1)
    bobs_wallet = world.bank.open("bob", 10_000, shard=0)
    bobs = await client.post(
        ORDERS, json=order_body(world, account=bobs_wallet), headers=as_user("bob", key="o-1")
    )
    alice, bob, staff = as_user(), as_user("bob"), as_user("sam", "support")
    pending = {"status": "PENDING"}

    first = await client.get(ORDERS, params={**pending, "limit": 1}, headers=staff)
    assert ids(first) == [bobs.json()["id"]]  # newest first, anyone's
    rest = await client.get(
        ORDERS, params={**pending, "after": first.json()["next_after"]}, headers=staff
    )
    assert (ids(rest), rest.json()["next_after"]) == ([alices.json()["id"]], None)
    assert {o["state"] for o in rest.json()["items"]} == {"PENDING"}
    done = await client.get(ORDERS, params={"status": "CONFIRMED"}, headers=staff)
    assert ids(done) == [confirmed.json()["id"]]
    bobs_only = {**pending, "customer_id": "bob"}
    assert ids(await client.get(ORDERS, params=bobs_only, headers=staff)) == [bobs.json()["id"]]
    assert ids(await client.get(ORDERS, headers=staff)) == []  # no status: their own, as before

    assert ids(await client.get(ORDERS, params=pending, headers=alice)) == [alices.json()["id"]]
    assert ids(await client.get(ORDERS, params=pending, headers=bob)) == [bobs.json()["id"]]
    mine_done = await client.get(ORDERS, params={"status": "CONFIRMED"}, headers=alice)
    assert ids(mine_done) == [confirmed.json()["id"]]
    assert ids(await client.get(ORDERS, params={"status": "CONFIRMED"}, headers=bob)) == []
    nosy = await client.get(ORDERS, params={**pending, "customer_id": "alice"}, headers=bob)
    assert nosy.status_code == 403
    # A cursor into someone else's list is not one into yours.
    foreign = await client.get(
        ORDERS, params={**pending, "after": alices.json()["id"]}, headers=bob
    )
    assert (foreign.status_code, foreign.json()["type"].rsplit("/", 1)[1]) == (
        400, "invalid-cursor",
    )  # fmt: skip
    for status in ("pending", "SHIPPED", ""):
        refused = await client.get(ORDERS, params={"status": status}, headers=staff)
        assert (refused.status_code, refused.headers["content-type"]) == (422, PROBLEM), status

    reserve.set()
    await app.state.saga.settle()
    assert ids(await client.get(ORDERS, params=pending, headers=staff)) == []


async def test_metrics_count_the_outcomes(
    client: httpx.AsyncClient, as_user: Headers, world: World
) -> None:
    await client.post(ORDERS, json=order_body(world), headers=as_user(key="o-1"))
    await client.post(ORDERS, json=order_body(world, ("kiwi", 1)), headers=as_user(key="o-2"))
    text = (await client.get("/metrics")).text
    assert 'flotilla_orders_sagas_total{reason="",state="CONFIRMED"} 1.0' in text
    assert 'flotilla_orders_refused_total{problem="unknown-product"} 1.0' in text
    assert (
        'flotilla_orders_remote_calls_total{method="Reserve",result="ok",service="inventory"} 1.0'
        in text
    )
