"""The accounts HTTP API against a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from flotilla_accounts.adapters.audit import AUDIT_LOG
from flotilla_accounts.adapters.unit_of_work import AccountsUnitOfWork
from flotilla_accounts.bootstrap import build_app
from flotilla_accounts.settings import AccountsSettings
from flotilla_kit.db import CheckViolation, Database, Query
from flotilla_kit.testing import JWT_ATTACKS, REVOKED_SESSION, TokenMinter

Headers = Callable[..., dict[str, str]]
PROBLEM = "application/problem+json"


async def open_account(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/accounts", json={"name": "Everyday", "currency": "EUR", **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    opened: dict[str, Any] = response.json()
    return opened


async def test_open_read_and_list_own_accounts(client: httpx.AsyncClient, as_user: Headers) -> None:
    alice = as_user("alice")
    opened = await open_account(client, alice, name="Savings", currency="CHF")
    assert opened["owner_id"] == "alice"
    assert opened["balance_minor"] == opened["available_minor"] == 0
    assert opened["id"].startswith("acc_0_")

    one = await client.get(f"/api/v1/accounts/{opened['id']}", headers=alice)
    assert one.status_code == 200
    assert one.json() == opened

    listed = await client.get("/api/v1/accounts", headers=alice)
    assert [a["id"] for a in listed.json()["items"]] == [opened["id"]]
    assert (await client.get("/api/v1/accounts", headers=as_user("bob"))).json() == {"items": []}


async def test_someone_elses_account_is_indistinguishable_from_a_missing_one(
    client: httpx.AsyncClient, as_user: Headers
) -> None:
    opened = await open_account(client, as_user("alice"))
    theirs = await client.get(f"/api/v1/accounts/{opened['id']}", headers=as_user("mallory"))
    missing = await client.get("/api/v1/accounts/acc_0_nothere", headers=as_user("mallory"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.headers["content-type"] == PROBLEM
    strip = {"request_id", "instance", "detail"}
    assert {k: v for k, v in theirs.json().items() if k not in strip} == {
        k: v for k, v in missing.json().items() if k not in strip
    }


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("support", 200), ("customer", 404)])
async def test_staff_may_read_any_account(
    client: httpx.AsyncClient, as_user: Headers, role: str, status: int
) -> None:
    opened = await open_account(client, as_user("alice"))
    response = await client.get(f"/api/v1/accounts/{opened['id']}", headers=as_user("x", role))
    assert response.status_code == status


async def test_requests_without_a_valid_token_get_401(
    client: httpx.AsyncClient, tokens: TokenMinter
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic YWxpY2U6cHc="},
        {"Authorization": f"Bearer {tokens.mint('alice', ttl_s=-120)}"},
    ):
        response = await client.get("/api/v1/accounts", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_deposit_is_double_entry(
    client: httpx.AsyncClient, as_user: Headers, app: FastAPI
) -> None:
    opened = await open_account(client, as_user("alice"))
    response = await client.post(
        f"/api/v1/accounts/{opened['id']}/deposits",
        json={"amount_minor": 12_345, "currency": "EUR"},
        headers=as_user("ada", "admin"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["account"]["balance_minor"] == 12_345
    database: Database = app.state.database
    async with database.transaction(write=False) as tx:
        total = await tx.scalar(Query(text("SELECT SUM(amount_minor) FROM entries")))
        balances = await tx.scalar(Query(text("SELECT SUM(balance_minor) FROM accounts")))
    assert (total, balances) == (0, 0)


async def test_the_database_itself_refuses_a_negative_customer_balance(
    client: httpx.AsyncClient, as_user: Headers, app: FastAPI
) -> None:
    opened = await open_account(client, as_user("alice"))
    database: Database = app.state.database
    with pytest.raises(CheckViolation):
        async with database.transaction() as tx:
            await tx.execute(
                Query(text("UPDATE accounts SET balance_minor = -1 WHERE id = :id")),
                id=opened["id"],
            )


@dataclass(frozen=True)
class Bad:
    """A request that must be refused with `status` / `slug` and change nothing."""

    name: str
    path: str  # `{account}` is replaced by an account the caller owns
    request: dict[str, Any]
    status: int
    slug: str
    role: str = "customer"


ACCOUNTS = "/api/v1/accounts"
DEPOSITS = "/api/v1/accounts/{account}/deposits"
JSON = {"content-type": "application/json"}
EUR = {"currency": "EUR"}

BAD_REQUESTS = [
    Bad("malformed json", ACCOUNTS, {"content": b'{"name": ', "headers": JSON}, 400, "malformed-json"),
    Bad("form instead of json", ACCOUNTS, {"data": {"name": "x", **EUR}}, 415, "unsupported-media-type"),
    Bad("text instead of json", ACCOUNTS, {"content": b"hi", "headers": {"content-type": "text/plain"}}, 415, "unsupported-media-type"),
    Bad("missing currency", ACCOUNTS, {"json": {"name": "x"}}, 422, "validation-error"),
    Bad("unknown currency", ACCOUNTS, {"json": {"name": "x", "currency": "XYZ"}}, 422, "validation-error"),
    Bad("lower-case currency", ACCOUNTS, {"json": {"name": "x", "currency": "eur"}}, 422, "validation-error"),
    Bad("blank name", ACCOUNTS, {"json": {"name": "  ", **EUR}}, 422, "validation-error"),
    Bad("unknown field", ACCOUNTS, {"json": {"name": "x", **EUR, "balance_minor": 10**6}}, 422, "validation-error"),
    Bad("json array", ACCOUNTS, {"json": ["name", "currency"]}, 422, "validation-error"),
    Bad("oversized body", ACCOUNTS, {"json": {"name": "x" * 2_000_000, **EUR}}, 413, "payload-too-large"),
    Bad("someone else as owner", ACCOUNTS + "?owner_id=bob", {"json": {"name": "x", **EUR}}, 403, "forbidden"),
    Bad("owner in the body", ACCOUNTS, {"json": {"name": "x", **EUR, "owner_id": "alice"}}, 422, "validation-error"),
    Bad("owner twice", ACCOUNTS + "?owner_id=alice&owner_id=bob", {"json": {"name": "x", **EUR}}, 422, "validation-error", "admin"),
    Bad("empty owner", ACCOUNTS + "?owner_id=", {"json": {"name": "x", **EUR}}, 422, "validation-error", "admin"),
    Bad("overlong owner", ACCOUNTS + "?owner_id=" + "o" * 65, {"json": {"name": "x", **EUR}}, 422, "validation-error", "admin"),
    Bad("deposit to another shard's id", f"{ACCOUNTS}/acc_1_abc/deposits", {"json": {**EUR, "amount_minor": 100}}, 404, "account-not-found", "admin"),
    Bad("negative deposit", DEPOSITS, {"json": {**EUR, "amount_minor": -5}}, 422, "validation-error", "admin"),
    Bad("zero deposit", DEPOSITS, {"json": {**EUR, "amount_minor": 0}}, 422, "validation-error", "admin"),
    Bad("fractional deposit", DEPOSITS, {"json": {**EUR, "amount_minor": 10.5}}, 422, "validation-error", "admin"),
    Bad("deposit as a string", DEPOSITS, {"json": {**EUR, "amount_minor": "100"}}, 422, "validation-error", "admin"),
    Bad("deposit as a boolean", DEPOSITS, {"json": {**EUR, "amount_minor": True}}, 422, "validation-error", "admin"),
    Bad("huge deposit", DEPOSITS, {"json": {**EUR, "amount_minor": 10**30}}, 422, "validation-error", "admin"),
    Bad("deposit in another currency", DEPOSITS, {"json": {"currency": "USD", "amount_minor": 100}}, 422, "currency-mismatch", "admin"),
    Bad("deposit by a customer", DEPOSITS, {"json": {**EUR, "amount_minor": 100}}, 403, "forbidden"),
    Bad("deposit to an unknown account", f"{ACCOUNTS}/acc_0_nope/deposits", {"json": {**EUR, "amount_minor": 100}}, 404, "account-not-found", "admin"),
    Bad("a NUL in the name", ACCOUNTS, {"json": {"name": "\u202e\u0000evil", **EUR}}, 422, "validation-error"),
    Bad("a right-to-left override in the name", ACCOUNTS, {"json": {"name": "\u202eevil", **EUR}}, 422, "validation-error"),
    Bad("a line break in the name", ACCOUNTS, {"json": {"name": "two\nlines", **EUR}}, 422, "validation-error"),
    Bad("a lone surrogate in the name", ACCOUNTS, {"content": b'{"name": "a\\ud800", "currency": "EUR"}', "headers": JSON}, 422, "validation-error"),
    Bad("a NUL in an owner id", ACCOUNTS + "?owner_id=al%00ice", {"json": {"name": "x", **EUR}}, 422, "validation-error", "admin"),
    Bad("a NUL in a deposit reference", DEPOSITS, {"json": {**EUR, "amount_minor": 100, "reference": "a\u0000b"}}, 422, "validation-error", "admin"),
    Bad("bad idempotency key", ACCOUNTS, {"json": {"name": "x", **EUR}, "headers": {"Idempotency-Key": "x" * 200}}, 400, "invalid-idempotency-key"),
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[b.name for b in BAD_REQUESTS])
async def test_bad_input_gets_a_problem_and_changes_nothing(
    client: httpx.AsyncClient, as_user: Headers, snapshot: Callable[[], Any], bad: Bad
) -> None:
    account = await open_account(client, as_user("alice"))
    request = dict(bad.request)
    headers = {**request.pop("headers", {}), **as_user("alice", bad.role)}
    before = await snapshot()
    response = await client.post(bad.path.format(account=account["id"]), headers=headers, **request)
    assert response.status_code == bad.status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"].endswith("/" + bad.slug)
    assert problem["status"] == bad.status
    assert "Traceback" not in response.text
    assert await snapshot() == before


async def test_idempotency_key_replays_and_refuses_a_different_body(
    client: httpx.AsyncClient, as_user: Headers, snapshot: Callable[[], Any]
) -> None:
    alice = {**as_user("alice"), "Idempotency-Key": "open-1"}
    first = await client.post(
        "/api/v1/accounts", json={"name": "A", "currency": "EUR"}, headers=alice
    )
    again = await client.post(
        "/api/v1/accounts", json={"name": "A", "currency": "EUR"}, headers=alice
    )
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["idempotency-replayed"] == "true"
    before = await snapshot()
    other = await client.post(
        "/api/v1/accounts", json={"name": "B", "currency": "EUR"}, headers=alice
    )
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert await snapshot() == before


async def test_concurrent_requests_with_one_key_make_one_deposit(
    client: httpx.AsyncClient, as_user: Headers
) -> None:
    account = await open_account(client, as_user("alice"))
    admin = {**as_user("ada", "admin"), "Idempotency-Key": "dep-1"}
    responses = await asyncio.gather(
        *(
            client.post(
                f"/api/v1/accounts/{account['id']}/deposits",
                json={"amount_minor": 500, "currency": "EUR"},
                headers=admin,
            )
            for _ in range(8)
        )
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["posting_id"] for r in responses}) == 1
    final = await client.get(f"/api/v1/accounts/{account['id']}", headers=as_user("alice"))
    assert final.json()["balance_minor"] == 500


async def test_health_and_metrics(client: httpx.AsyncClient, as_user: Headers) -> None:
    assert (await client.get("/livez")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok"}
    await client.get("/api/v1/accounts", headers=as_user("alice"))
    metrics = (await client.get("/metrics")).text
    assert (
        'flotilla_http_requests_total{method="GET",route="/api/v1/accounts",service="accounts",status="200"}'
        in metrics
    )


async def test_responses_carry_the_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/livez", headers={"X-Request-Id": "req-123"})
    assert response.headers["x-request-id"] == "req-123"
    invalid = await client.get("/livez", headers={"X-Request-Id": "bad id with spaces"})
    assert invalid.headers["x-request-id"] != "bad id with spaces"


@pytest.mark.parametrize("attack", JWT_ATTACKS, ids=list(JWT_ATTACKS))
async def test_jwt_attacks_are_refused_by_the_service_itself(
    client: httpx.AsyncClient, app: FastAPI, tokens: TokenMinter, attack: str
) -> None:
    # Behind the gateway too: a service never trusts that someone else checked.
    app.state.token_verifier.revocations.load([REVOKED_SESSION])
    token = JWT_ATTACKS[attack](tokens)
    response = await client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_writes_are_audited_in_one_intact_chain(
    client: httpx.AsyncClient, as_user: Headers, app: FastAPI
) -> None:
    account = await open_account(client, as_user("alice"))
    await client.post(
        f"/api/v1/accounts/{account['id']}/deposits",
        json={"amount_minor": 700, "currency": "EUR"},
        headers=as_user("ada", "admin"),
    )
    database: Database = app.state.database
    async with AccountsUnitOfWork(database, write=False) as uow:
        records = await AUDIT_LOG.tail(uow.transaction, 10)
        report = await AUDIT_LOG.verify(uow.transaction)
    assert [(r.actor, r.action, r.target) for r in records] == [
        ("alice", "account.opened", account["id"]),
        ("ada", "deposit", account["id"]),
    ]
    assert records[1].details["amount_minor"] == 700
    assert (report.intact, report.records) == (True, 2)


async def test_staff_read_this_shards_audit_log_and_no_other(
    client: httpx.AsyncClient, as_user: Headers, database_url: str, tokens: TokenMinter
) -> None:
    account = await open_account(client, as_user("alice"))
    support = as_user("sam", "support")
    log = await client.get("/api/v1/audit/accounts/0", headers=support)
    assert log.status_code == 200, log.text
    assert (log.json()["log"], log.json()["chain"]) == (
        "accounts-s0", {"intact": True, "records": 1, "first_broken": None, "reason": ""},
    )  # fmt: skip
    (record,) = log.json()["records"]
    assert (record["actor"], record["action"], record["target"]) == (
        "alice", "account.opened", account["id"],
    )  # fmt: skip
    other = await client.get("/api/v1/audit/accounts/1", headers=support)
    assert (other.status_code, other.headers["content-type"]) == (404, PROBLEM)
    assert other.json()["type"].endswith("/audit-log-not-found")
    customer = await client.get("/api/v1/audit/accounts/0", headers=as_user("alice"))
    assert customer.status_code == 403
    # An instance of shard 1 (on this test's database) answers for shard 1, by its name.
    shard_1 = build_app(
        AccountsSettings(database_url=database_url, profile="test", shard=1, shards=2),
        verifier=tokens.verifier(),
    )
    async with (
        shard_1.router.lifespan_context(shard_1),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=shard_1), base_url="http://accounts-1"
        ) as other_client,
    ):
        theirs = await other_client.get("/api/v1/audit/accounts/1", headers=support)
        mine = await other_client.get("/api/v1/audit/accounts/0", headers=support)
    assert (theirs.status_code, theirs.json()["log"]) == (200, "accounts-s1")
    assert mine.status_code == 404
