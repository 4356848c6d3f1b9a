"""Where accounts live (a customer's home shard) and the account statement, over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flotilla_accounts.bootstrap import build_app
from flotilla_accounts.settings import AccountsSettings
from flotilla_kit.testing import TokenMinter

from .conftest import take_snapshot
from .harness import owner_on

Headers = Callable[..., dict[str, str]]
PROBLEM = "application/problem+json"


@pytest.fixture
async def shard_one_of_three(
    database_url: str, tokens: TokenMinter
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = AccountsSettings(database_url=database_url, profile="test", shard=1, shards=3)
    app = build_app(settings, verifier=tokens.verifier())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://accounts") as client:
            yield app, client


async def test_accounts_open_only_on_their_owners_home_shard(
    shard_one_of_three: tuple[FastAPI, httpx.AsyncClient], as_user: Headers
) -> None:
    app, client = shard_one_of_three
    here, elsewhere = owner_on(1, 3), owner_on(2, 3)
    body = {"name": "Everyday", "currency": "EUR"}
    mine = await client.post("/api/v1/accounts", json=body, headers=as_user(here))
    assert mine.status_code == 201, mine.text
    assert mine.json()["id"].startswith("acc_1_")
    for_someone = await client.post(
        "/api/v1/accounts", params={"owner_id": here}, json=body, headers=as_user("ada", "admin")
    )
    assert for_someone.status_code == 201

    before = await take_snapshot(app.state.database)
    for response in (
        await client.post("/api/v1/accounts", json=body, headers=as_user(elsewhere)),
        await client.post(
            "/api/v1/accounts",
            params={"owner_id": elsewhere},
            json=body,
            headers={**as_user("ada", "admin"), "Idempotency-Key": "k1"},
        ),
    ):
        assert response.status_code == 421
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["type"].endswith("/wrong-shard")
        assert problem["shard"] == 2
    assert await take_snapshot(app.state.database) == before

    # Listing follows the same rule: an owner's accounts are on their home shard.
    listed = await client.get(
        "/api/v1/accounts", params={"owner_id": here}, headers=as_user("sam", "support")
    )
    assert listed.status_code == 200
    assert {a["id"] for a in listed.json()["items"]} == {
        mine.json()["id"],
        for_someone.json()["id"],
    }
    elsewhere_listed = await client.get(
        "/api/v1/accounts", params={"owner_id": elsewhere}, headers=as_user("sam", "support")
    )
    assert elsewhere_listed.status_code == 421
    assert elsewhere_listed.json()["shard"] == 2
    not_staff = await client.get(
        "/api/v1/accounts", params={"owner_id": here}, headers=as_user(elsewhere)
    )
    assert not_staff.status_code == 403

    # An id of another shard is unknown here, even to staff.
    other = await client.get("/api/v1/accounts/acc_2_0123abcd", headers=as_user("sam", "support"))
    assert other.status_code == 404


async def test_the_owner_goes_into_the_idempotency_fingerprint(
    client: httpx.AsyncClient, as_user: Headers
) -> None:
    admin = {**as_user("ada", "admin"), "Idempotency-Key": "open-for"}
    body = {"name": "Everyday", "currency": "EUR"}
    first = await client.post(
        "/api/v1/accounts", params={"owner_id": "bob"}, json=body, headers=admin
    )
    again = await client.post(
        "/api/v1/accounts", params={"owner_id": "bob"}, json=body, headers=admin
    )
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    other = await client.post(
        "/api/v1/accounts", params={"owner_id": "eve"}, json=body, headers=admin
    )
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")


async def funded_account(client: httpx.AsyncClient, as_user: Headers, deposits: list[int]) -> str:
    opened = await client.post(
        "/api/v1/accounts", json={"name": "Main", "currency": "EUR"}, headers=as_user("alice")
    )
    account_id: str = opened.json()["id"]
    for amount in deposits:
        response = await client.post(
            f"/api/v1/accounts/{account_id}/deposits",
            json={"amount_minor": amount, "currency": "EUR", "reference": f"cash {amount}"},
            headers=as_user("ada", "admin"),
        )
        assert response.status_code == 201
    return account_id


async def test_a_statement_pages_through_every_entry_newest_first(
    client: httpx.AsyncClient, as_user: Headers
) -> None:
    account_id = await funded_account(client, as_user, [1, 2, 3, 4, 5])
    url = f"/api/v1/accounts/{account_id}/entries"
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    pages = 0
    while True:
        response = await client.get(url, params=params, headers=as_user("alice"))
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert len(page["items"]) <= 2
        seen += page["items"]
        if page["next"] is None:
            break
        params["after"] = page["next"]
    assert pages == 3
    assert [item["amount_minor"] for item in seen] == [5, 4, 3, 2, 1]
    assert [item["reference"] for item in seen] == [f"cash {n}" for n in (5, 4, 3, 2, 1)]
    assert {item["kind"] for item in seen} == {"deposit"}
    assert set(seen[0]) == {
        "id", "posting_id", "kind", "amount_minor", "currency", "reference", "created_at",
    }  # fmt: skip
    ids = [item["id"] for item in seen]
    assert ids == sorted(ids, reverse=True)

    everything = await client.get(url, headers=as_user("sam", "support"))
    assert [i["id"] for i in everything.json()["items"]] == ids
    assert everything.json()["next"] is None
    exact = await client.get(url, params={"limit": 5}, headers=as_user("alice"))
    assert exact.json()["next"] is None


@pytest.mark.parametrize(
    ("params", "slug"),
    [
        ({"limit": 0}, "validation-error"),
        ({"limit": 201}, "validation-error"),
        ({"limit": "ten"}, "validation-error"),
        ({"after": "not-a-cursor!"}, "invalid-cursor"),
        ({"after": ""}, "invalid-cursor"),
        ({"after": "AAAAAAAAAAA"}, "invalid-cursor"),  # entry id 0
        ({"after": "AAAAAAAAAAE="}, "invalid-cursor"),  # padded: not as handed out
        ({"after": "AAAAAAAAAAAB"}, "invalid-cursor"),  # nine bytes
        ({"after": "x" * 33}, "validation-error"),
    ],
)
async def test_a_bad_page_request_is_a_422(
    client: httpx.AsyncClient, as_user: Headers, params: dict[str, Any], slug: str
) -> None:
    account_id = await funded_account(client, as_user, [1])
    response = await client.get(
        f"/api/v1/accounts/{account_id}/entries", params=params, headers=as_user("alice")
    )
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/" + slug)


async def test_someone_elses_statement_is_not_found(
    client: httpx.AsyncClient, as_user: Headers
) -> None:
    account_id = await funded_account(client, as_user, [1])
    theirs = await client.get(f"/api/v1/accounts/{account_id}/entries", headers=as_user("bob"))
    missing = await client.get("/api/v1/accounts/acc_0_nope/entries", headers=as_user("bob"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["type"] == missing.json()["type"]
    anonymous = await client.get(f"/api/v1/accounts/{account_id}/entries")
    assert anonymous.status_code == 401
