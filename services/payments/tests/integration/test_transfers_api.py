"""The payments HTTP API against real databases and real gRPC (mutual TLS) to fake
ledger shards: answers, bad input, idempotency, who may read what."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flotilla_kit.clock import ManualClock
from flotilla_kit.testing import TokenMinter
from flotilla_payments.adapters.audit import AUDIT_LOG
from flotilla_payments.adapters.unit_of_work import SqlPaymentsUnitOfWork
from services.payments.tests.integration.conftest import Headers, Ledger

PROBLEM = "application/problem+json"
TRANSFERS = "/api/v1/transfers"


def body(source: str, target: str, amount: Any = 2_500, **extra: Any) -> dict[str, Any]:
    return {
        "from_account": source,
        "to_account": target,
        "amount_minor": amount,
        "currency": "EUR",
        **extra,
    }


async def test_a_cross_shard_transfer_is_committed_and_readable(
    client: httpx.AsyncClient, as_user: Headers, accounts: dict[str, str], ledger: Ledger
) -> None:
    alice = as_user("alice", key="t-1")
    response = await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b1"], reference="rent"), headers=alice
    )
    assert response.status_code == 201, response.text
    transfer = response.json()
    assert response.headers["location"] == f"{TRANSFERS}/{transfer['id']}"
    assert {k: transfer[k] for k in ("state", "path", "refusal", "amount_minor", "reference")} == {
        "state": "committed", "path": "2pc", "refusal": None, "amount_minor": 2_500, "reference": "rent",
    }  # fmt: skip
    assert transfer["decided_at"] is not None
    assert transfer["completed_at"] is not None
    assert ledger.bank.shards[0].balance(accounts["a0"]) == 7_500
    # Shard 1's first instance is dead: the next one answered.
    assert ledger.bank.shards[1].balance(accounts["b1"]) == 2_500
    assert ledger.bank.statuses(transfer["id"]) == {"debit": "committed", "credit": "committed"}
    read = await client.get(response.headers["location"], headers=as_user("alice"))
    assert read.status_code == 200
    assert read.json() == transfer


async def test_a_same_shard_transfer_is_one_local_call(
    client: httpx.AsyncClient, as_user: Headers, accounts: dict[str, str], ledger: Ledger
) -> None:
    response = await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b0"]), headers=as_user(key="t-1")
    )
    assert response.status_code == 201, response.text
    assert (response.json()["path"], response.json()["state"]) == ("local", "committed")
    assert [m for m, _, _ in ledger.servicers[0].calls] == ["Transfer"]
    assert ledger.bank.shards[0].balance(accounts["b0"]) == 2_500


@dataclass(frozen=True)
class Bad:
    """A transfer request that must be refused with `status` / `slug`, move no money, and
    leave in the transfer log only `row` (path, state, refusal), if anything."""

    name: str
    request: Callable[[dict[str, str]], dict[str, Any]]  # accounts -> httpx arguments
    status: int
    slug: str
    row: tuple[str, str, str] | None = None
    role: str = "customer"
    key: str | None = "bad-1"


def js(
    make: Callable[[dict[str, str]], dict[str, Any]],
) -> Callable[[dict[str, str]], dict[str, Any]]:
    return lambda a: {"json": make(a)}


NOT_OURS = f"acc_1_{uuid.uuid4().hex}"
BAD_REQUESTS = [
    Bad("unknown destination account", js(lambda a: body(a["a0"], NOT_OURS)), 404, "account-not-found", ("2pc", "aborted", "account-not-found")),
    Bad("unknown source account", js(lambda a: body(f"acc_0_{uuid.uuid4().hex}", a["b1"])), 404, "account-not-found", ("2pc", "aborted", "account-not-found")),
    Bad("another customer's account as source", js(lambda a: body(a["b1"], a["a0"], 1)), 404, "account-not-found", ("2pc", "aborted", "account-not-found")),
    Bad("another customer's account on the same shard", js(lambda a: body(a["b0"], a["a0"], 1)), 404, "account-not-found", ("local", "aborted", "account-not-found")),
    Bad("unparseable account id", js(lambda a: body(a["a0"], "bob's savings")), 404, "account-not-found"),
    Bad("an account id longer than any", js(lambda a: body(a["a0"], "acc_1_" + "f" * 90)), 404, "account-not-found"),
    Bad("a shard nobody serves", js(lambda a: body(a["a0"], f"acc_7_{uuid.uuid4().hex}")), 404, "account-not-found"),
    Bad("a bank system account", js(lambda a: body("sys_0_cash_eur", a["b1"])), 404, "account-not-found"),
    Bad("same account both sides", js(lambda a: body(a["a0"], a["a0"])), 422, "same-account"),
    Bad("zero amount", js(lambda a: body(a["a0"], a["b1"], 0)), 422, "validation-error"),
    Bad("negative amount", js(lambda a: body(a["a0"], a["b1"], -5)), 422, "validation-error"),
    Bad("fractional amount", js(lambda a: body(a["a0"], a["b1"], 10.5)), 422, "validation-error"),
    Bad("amount as a string", js(lambda a: body(a["a0"], a["b1"], "100")), 422, "validation-error"),
    Bad("amount as a boolean", js(lambda a: body(a["a0"], a["b1"], True)), 422, "validation-error"),
    Bad("huge amount", js(lambda a: body(a["a0"], a["b1"], 10**15 + 1)), 422, "validation-error"),
    Bad("unknown currency", js(lambda a: {**body(a["a0"], a["b1"]), "currency": "XYZ"}), 422, "validation-error"),
    Bad("lower-case currency", js(lambda a: {**body(a["a0"], a["b1"]), "currency": "eur"}), 422, "validation-error"),
    Bad("currency mismatch", js(lambda a: {**body(a["a0"], a["b1"]), "currency": "USD"}), 422, "currency-mismatch", ("2pc", "aborted", "currency-mismatch")),
    Bad("destination in another currency", js(lambda a: body(a["a0"], a["u1"])), 422, "currency-mismatch", ("2pc", "aborted", "currency-mismatch")),
    Bad("insufficient funds", js(lambda a: body(a["a0"], a["b1"], 10_001)), 422, "insufficient-funds", ("2pc", "aborted", "insufficient-funds")),
    Bad("insufficient funds on one shard", js(lambda a: body(a["a0"], a["b0"], 10_001)), 422, "insufficient-funds", ("local", "aborted", "insufficient-funds")),
    Bad("reference too long", js(lambda a: body(a["a0"], a["b1"], reference="x" * 141)), 422, "validation-error"),
    Bad("a NUL in the reference", js(lambda a: body(a["a0"], a["b1"], reference="a\u0000b")), 422, "validation-error"),
    Bad("an escape sequence in the reference", js(lambda a: body(a["a0"], a["b1"], reference="\u001b[2Jgone")), 422, "validation-error"),
    Bad("a NUL in an account id", js(lambda a: body(a["a0"], a["b1"] + "\u0000")), 422, "validation-error"),
    Bad("a NUL in on_behalf_of", js(lambda a: body(a["a0"], a["b1"], 1, on_behalf_of="ali\u0000ce")), 422, "validation-error", role="service:orders"),
    Bad("unknown field", js(lambda a: body(a["a0"], a["b1"], fee_minor=0)), 422, "validation-error"),
    Bad("malformed json", lambda a: {"content": b'{"from_account": ', "headers": {"content-type": "application/json"}}, 400, "malformed-json"),
    Bad("form instead of json", lambda a: {"data": body(a["a0"], a["b1"])}, 415, "unsupported-media-type"),
    Bad("missing Idempotency-Key", js(lambda a: body(a["a0"], a["b1"])), 400, "idempotency-key-required", key=None),
    Bad("unusable Idempotency-Key", js(lambda a: body(a["a0"], a["b1"])), 400, "invalid-idempotency-key", key="k" * 129),
    Bad("support staff may not move money", js(lambda a: body(a["a0"], a["b1"])), 403, "forbidden", role="support"),
    Bad("a customer acting for another", js(lambda a: body(a["b1"], a["a0"], 1, on_behalf_of="bob")), 403, "forbidden"),
    Bad("a service for someone whose account it is not", js(lambda a: body(a["a0"], a["b1"], 1, on_behalf_of="bob")), 404, "account-not-found", ("2pc", "aborted", "account-not-found"), role="service:orders"),
    Bad("on behalf of nobody", js(lambda a: body(a["a0"], a["b1"], 1, on_behalf_of="")), 422, "validation-error", role="service:orders"),
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[b.name for b in BAD_REQUESTS])
async def test_bad_input_gets_a_problem_and_moves_no_money(
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    ledger: Ledger,
    table: Callable[[], Any],
    bad: Bad,
) -> None:
    arguments = bad.request(accounts)
    headers = {**arguments.pop("headers", {}), **as_user("alice", bad.role, key=bad.key)}
    money = ledger.bank.money()
    response = await client.post(TRANSFERS, headers=headers, **arguments)
    assert response.status_code == bad.status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"].endswith("/" + bad.slug)
    assert problem["status"] == bad.status
    assert "Traceback" not in response.text
    assert ledger.bank.money() == money
    branches = [b for s in ledger.bank.shards.values() for b in s.branches.values()]
    assert all(b.status == "aborted" for b in branches)  # none left prepared
    if bad.row is None:
        assert await table() == ((), 0, 0)
    else:
        assert await table() == ((bad.row,), 1, 2)  # the transfer, its key, requested + aborted
        assert problem["transfer_id"]


async def test_a_service_moves_a_customers_money_on_their_behalf(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    ledger: Ledger,
) -> None:
    """The checkout saga pays with the customer's money: the transfer is the customer's."""
    orders = as_user("service:orders", "service:orders", key="order-1-pay")
    response = await client.post(
        TRANSFERS,
        json=body(accounts["a0"], accounts["b1"], 1_200, on_behalf_of="alice", reference="o1"),
        headers=orders,
    )
    assert response.status_code == 201, response.text
    assert ledger.bank.shards[0].balance(accounts["a0"]) == 8_800
    # alice reads it as her own; it is listed among hers.
    own = await client.get(response.headers["location"], headers=as_user("alice"))
    assert own.status_code == 200
    listed = await client.get(TRANSFERS, headers=as_user("alice"))
    assert [t["id"] for t in listed.json()["items"]] == [response.json()["id"]]
    # The audit says who asked, and for whom.
    async with SqlPaymentsUnitOfWork(app.state.database, write=False) as uow:
        records = await AUDIT_LOG.tail(uow.transaction, limit=10)
    requested = next(r for r in records if r.action == "transfer.requested")
    assert requested.actor == "service:orders"
    assert requested.details["on_behalf_of"] == "alice"


async def test_no_token_gets_401(client: httpx.AsyncClient, accounts: dict[str, str]) -> None:
    response = await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b1"]), headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_the_same_key_replays_and_another_body_is_refused(
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    ledger: Ledger,
    table: Callable[[], Any],
) -> None:
    alice = as_user("alice", key="once")
    first = await client.post(TRANSFERS, json=body(accounts["a0"], accounts["b1"]), headers=alice)
    again = await client.post(TRANSFERS, json=body(accounts["a0"], accounts["b1"]), headers=alice)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["idempotency-replayed"] == "true"
    assert ledger.bank.shards[0].balance(accounts["a0"]) == 7_500  # moved once
    before, money = await table(), ledger.bank.money()
    other = await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b1"], 1), headers=alice
    )
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert (await table(), ledger.bank.money()) == (before, money)
    # A refusal replays as the same refusal.
    refused = as_user("alice", key="too-much")
    answers = [
        await client.post(
            TRANSFERS, json=body(accounts["a0"], accounts["b1"], 10**6), headers=refused
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [422, 422]
    assert answers[0].json()["transfer_id"] == answers[1].json()["transfer_id"]


async def test_an_unreachable_shard_aborts_with_503_and_the_abort_is_finished_later(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    ledger: Ledger,
    clock: ManualClock,
) -> None:
    ledger.servicers[1].down = True
    money = ledger.bank.money()
    response = await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b1"]), headers=as_user(key="k")
    )
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    problem = response.json()
    assert (problem["type"].endswith("/transfer-aborted"), problem["refusal"]) == (
        True,
        "participant-unavailable",
    )
    assert ledger.bank.money() == money  # shard 0's hold is released already
    stored = (await client.get(f"{TRANSFERS}/{problem['transfer_id']}", headers=as_user())).json()
    assert stored["state"] == "aborting"  # shard 1 has not acknowledged yet
    ledger.servicers[1].down = False
    clock.advance(await clock.next_sleep())
    await app.state.coordinator.settle()
    stored = (await client.get(f"{TRANSFERS}/{problem['transfer_id']}", headers=as_user())).json()
    assert (stored["state"], stored["refusal"]) == ("aborted", "participant-unavailable")
    assert ledger.bank.statuses(problem["transfer_id"]) == {"debit": "aborted", "credit": "aborted"}


@pytest.mark.parametrize("answer_within_s", [0.0])
async def test_a_transfer_not_final_in_time_is_202_with_a_location(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    ledger: Ledger,
    clock: ManualClock,
) -> None:
    ledger.servicers[0].down = True  # a local transfer: only shard 0 can settle it
    response = await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b0"]), headers=as_user(key="k")
    )
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "preparing"
    location = response.headers["location"]
    delay = await clock.next_sleep()  # no answer from the shard: the driver waits to retry
    ledger.servicers[0].down = False
    clock.advance(delay)
    await app.state.coordinator.settle()
    assert (await client.get(location, headers=as_user())).json()["state"] == "committed"


async def test_who_may_read_a_transfer(
    client: httpx.AsyncClient, as_user: Headers, accounts: dict[str, str]
) -> None:
    created = await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b1"]), headers=as_user(key="k")
    )
    path = created.headers["location"]
    statuses = {
        who: (await client.get(path, headers=as_user(who, role))).status_code
        for who, role in (
            ("alice", "customer"),
            ("bob", "customer"),
            ("sam", "support"),
            ("ada", "admin"),
        )
    }
    assert statuses == {"alice": 200, "bob": 404, "sam": 200, "ada": 200}
    theirs = await client.get(path, headers=as_user("bob"))
    missing = await client.get(f"{TRANSFERS}/{uuid.uuid4()}", headers=as_user("bob"))
    garbage = await client.get(f"{TRANSFERS}/not-a-transfer", headers=as_user("bob"))
    strip = {"request_id", "instance", "detail"}
    shapes = [
        {k: v for k, v in r.json().items() if k not in strip} for r in (theirs, missing, garbage)
    ]
    assert shapes[0] == shapes[1] == shapes[2]
    assert theirs.json()["type"].endswith("/transfer-not-found")


async def test_the_list_is_the_callers_own_newest_first_in_pages(
    client: httpx.AsyncClient, as_user: Headers, accounts: dict[str, str], clock: ManualClock
) -> None:
    ids = []
    for n in range(5):
        clock.advance(1)
        created = await client.post(
            TRANSFERS,
            json=body(accounts["a0"], accounts["b1"], 10 + n),
            headers=as_user(key=f"k-{n}"),
        )
        ids.append(created.json()["id"])
    await client.post(
        TRANSFERS, json=body(accounts["b1"], accounts["a0"], 1), headers=as_user("bob", key="k-0")
    )
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        page = (await client.get(TRANSFERS, params=params, headers=as_user())).json()
        seen += [t["id"] for t in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == ids[::-1]
    bobs = (await client.get(TRANSFERS, headers=as_user("bob"))).json()["items"]
    assert len(bobs) == 1
    for cursor in (bobs[0]["id"], "nonsense"):
        refused = await client.get(TRANSFERS, params={"after": cursor}, headers=as_user())
        assert refused.status_code == 400
        assert refused.json()["type"].endswith("/invalid-cursor")
    for limit in (0, 101):
        assert (
            await client.get(TRANSFERS, params={"limit": limit}, headers=as_user())
        ).status_code == 422


async def test_transfers_are_audited_in_one_intact_chain(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, accounts: dict[str, str]
) -> None:
    ok = await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b1"]), headers=as_user(key="k-1")
    )
    refused = await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b1"], 10**6), headers=as_user(key="k-2")
    )
    async with SqlPaymentsUnitOfWork(app.state.database, write=False) as uow:
        records = await AUDIT_LOG.tail(uow.transaction, 10)
        report = await AUDIT_LOG.verify(uow.transaction)
    assert [(r.action, r.target, r.outcome) for r in records] == [
        ("transfer.requested", ok.json()["id"], "success"),
        ("transfer.committed", ok.json()["id"], "success"),
        ("transfer.requested", refused.json()["transfer_id"], "success"),
        ("transfer.aborted", refused.json()["transfer_id"], "failure"),
    ]
    assert records[0].actor == "alice"
    assert records[0].details["amount_minor"] == 2_500
    assert records[3].details["refusal"] == "insufficient-funds"
    assert (report.intact, report.records) == (True, 4)
    log = await client.get(
        "/api/v1/audit/payments", params={"limit": 3}, headers=as_user("sam", "support")
    )
    assert log.status_code == 200, log.text
    assert (log.json()["log"], log.json()["chain"]) == (
        "payments", {"intact": True, "records": 4, "first_broken": None, "reason": ""},
    )  # fmt: skip
    assert [r["action"] for r in log.json()["records"]] == [
        "transfer.aborted", "transfer.requested", "transfer.committed",
    ]  # fmt: skip
    customer = await client.get("/api/v1/audit/payments", headers=as_user("alice"))
    assert customer.status_code == 403


async def test_health_openapi_and_metrics(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    tokens: TokenMinter,
) -> None:
    assert (await client.get("/readyz")).json()["checks"] == {"database": "ok"}
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths) == {
        "/api/v1/transfers",
        "/api/v1/transfers/{transfer_id}",
        "/api/v1/in-doubt-transfers",
        "/api/v1/audit/payments",
    }
    await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b1"]), headers=as_user(key="k-1")
    )
    await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b0"], 10**6), headers=as_user(key="k-2")
    )
    await app.state.recovery.tick()
    metrics = (await client.get("/metrics")).text
    for line in (
        'flotilla_payments_transfers_total{outcome="committed",path="2pc"} 1.0',
        'flotilla_payments_transfers_total{outcome="refused",path="local"} 1.0',
        "flotilla_payments_prepare_duration_seconds_count 1.0",
        'flotilla_payments_decision_duration_seconds_count{path="2pc"} 1.0',
        'flotilla_payments_decision_duration_seconds_count{path="local"} 1.0',
        "flotilla_payments_phase_two_duration_seconds_count 1.0",
        "flotilla_payments_in_doubt_transfers 0.0",
        'flotilla_payments_ledger_calls_total{method="Prepare",result="ok"} 2.0',
        'flotilla_payments_ledger_calls_total{method="Commit",result="ok"} 2.0',
        'flotilla_payments_ledger_calls_total{method="Transfer",result="ok"} 1.0',
        'flotilla_http_requests_total{method="POST",route="/api/v1/transfers",service="payments",status="201"} 1.0',
    ):
        assert line in metrics, line
    assert "# TYPE flotilla_payments_recovery_actions_total counter" in metrics
