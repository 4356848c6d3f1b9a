"""Money through the gateway: transfers on one ledger shard and across two (2PC), with the
balances read back from both shards. The crash cases are in `tests/chaos`."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from flotilla_kit.sharding import shard_of
from tests.e2e.system import RunningSystem

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"


class Bank:
    """alice, bob and carol as the demo data makes them: alice and bob share a shard,
    carol is on the other one."""

    def __init__(self, system: RunningSystem, client: httpx.Client) -> None:
        self.system = system
        self.client = client
        self.tokens = {name: system.token(name) for name in ("alice", "bob", "carol", "sam")}

    def auth(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    def everyday(self, username: str) -> str:
        listed = self.client.get(
            "/api/v1/accounts",
            params={"owner_id": self.system.user_id(username)},
            headers=self.auth("sam"),
        )
        assert listed.status_code == 200, listed.text
        account_id: str = next(a["id"] for a in listed.json()["items"] if a["name"] == "Everyday")
        return account_id

    def balance(self, account_id: str) -> int:
        account = self.client.get(f"/api/v1/accounts/{account_id}", headers=self.auth("sam"))
        assert account.status_code == 200, account.text
        balance: int = account.json()["balance_minor"]
        return balance

    def transfer(
        self,
        source: str,
        destination: str,
        amount: int,
        *,
        key: str | None = None,
        by: str = "alice",
    ) -> httpx.Response:
        return self.client.post(
            "/api/v1/transfers",
            json={
                "from_account": source,
                "to_account": destination,
                "amount_minor": amount,
                "currency": "EUR",
                "reference": "e2e",
            },
            headers={**self.auth(by), "Idempotency-Key": key or str(uuid.uuid4())},
        )


@pytest.fixture
def bank(system: RunningSystem) -> Any:
    with system.client() as client:
        yield Bank(system, client)


def test_the_demo_customers_sit_where_the_tests_expect(bank: Bank) -> None:
    alice, bob, carol = (bank.everyday(name) for name in ("alice", "bob", "carol"))
    assert shard_of(alice) == shard_of(bob) != shard_of(carol)


@pytest.mark.parametrize(("to", "path"), [("bob", "local"), ("carol", "2pc")])
def test_a_transfer_moves_money_exactly_once(bank: Bank, to: str, path: str) -> None:
    source, destination = bank.everyday("alice"), bank.everyday(to)
    before = bank.balance(source), bank.balance(destination)
    key = str(uuid.uuid4())

    sent = bank.transfer(source, destination, 1_234, key=key)
    assert sent.status_code == 201, sent.text
    transfer = sent.json()
    assert (transfer["state"], transfer["path"], transfer["refusal"]) == ("committed", path, None)
    assert sent.headers["location"] == f"/api/v1/transfers/{transfer['id']}"
    assert (bank.balance(source), bank.balance(destination)) == (
        before[0] - 1_234,
        before[1] + 1_234,
    )

    # The client lost the answer and sends the same request again: told, not paid twice.
    again = bank.transfer(source, destination, 1_234, key=key)
    assert again.status_code == 201
    assert again.headers["idempotency-replayed"] == "true"
    assert again.json()["id"] == transfer["id"]
    assert bank.balance(source) == before[0] - 1_234

    read = bank.client.get(sent.headers["location"], headers=bank.auth("alice"))
    assert read.status_code == 200
    assert read.json()["state"] == "committed"


def test_a_refused_transfer_moves_nothing_on_either_shard(bank: Bank) -> None:
    source, destination = bank.everyday("alice"), bank.everyday("carol")
    before = bank.balance(source), bank.balance(destination)
    refused = bank.transfer(source, destination, before[0] + 1)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == PROBLEM
    problem = refused.json()
    assert problem["type"].endswith("/insufficient-funds")
    assert (bank.balance(source), bank.balance(destination)) == before

    stored = bank.client.get(
        f"/api/v1/transfers/{problem['transfer_id']}", headers=bank.auth("alice")
    )
    assert (stored.json()["state"], stored.json()["refusal"]) == (
        "aborted",
        "insufficient-funds",
    )


def test_only_the_owner_moves_money_out_of_an_account(bank: Bank) -> None:
    alices, bobs = bank.everyday("alice"), bank.everyday("bob")
    before = bank.balance(alices)
    stolen = bank.transfer(alices, bobs, 100, by="bob")
    # The shard checks the owner; to bob, alice's account does not exist.
    assert stolen.status_code == 404
    assert stolen.json()["type"].endswith("/account-not-found")
    assert bank.balance(alices) == before


def test_bad_requests_get_problems_and_write_nothing(bank: Bank) -> None:
    source, destination = bank.everyday("alice"), bank.everyday("carol")
    cases: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        ({"amount_minor": 5}, {}, 400, "idempotency-key-required"),
        ({"amount_minor": 0}, {"Idempotency-Key": "k-zero"}, 422, "validation-error"),
        ({"amount_minor": 1.5}, {"Idempotency-Key": "k-float"}, 422, "validation-error"),
        ({"currency": "XYZ"}, {"Idempotency-Key": "k-cur"}, 422, "validation-error"),
        ({"to_account": source}, {"Idempotency-Key": "k-same"}, 422, "same-account"),
        ({"to_account": "acc_9_00"}, {"Idempotency-Key": "k-shard"}, 404, "account-not-found"),
    ]
    base = {
        "from_account": source,
        "to_account": destination,
        "amount_minor": 10,
        "currency": "EUR",
    }
    before = bank.balance(source)
    for change, headers, status, kind in cases:
        response = bank.client.post(
            "/api/v1/transfers", json={**base, **change}, headers={**bank.auth("alice"), **headers}
        )
        assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM)
        assert response.json()["type"].endswith(f"/{kind}"), response.text
    assert bank.balance(source) == before


def test_transfers_are_read_by_their_initiator_and_staff_only(bank: Bank) -> None:
    sent = bank.transfer(bank.everyday("alice"), bank.everyday("carol"), 10)
    location = sent.headers["location"]
    assert bank.client.get(location, headers=bank.auth("bob")).status_code == 404
    assert bank.client.get(location, headers=bank.auth("sam")).status_code == 200
    mine = bank.client.get("/api/v1/transfers", headers=bank.auth("alice"))
    assert sent.json()["id"] in {t["id"] for t in mine.json()["items"]}
    bobs = bank.client.get("/api/v1/transfers", headers=bank.auth("bob"))
    assert sent.json()["id"] not in {t["id"] for t in bobs.json()["items"]}
    # The participants' outcome question is for services over mTLS, not for the internet.
    outcome = bank.client.get(
        f"/internal/v1/transfers/{sent.json()['id']}/outcome", headers=bank.auth("sam")
    )
    assert outcome.status_code == 404


def test_nothing_is_left_in_doubt_and_the_metrics_count_both_paths(bank: Bank) -> None:
    alices = bank.everyday("alice")
    assert bank.transfer(alices, bank.everyday("bob"), 1).status_code == 201
    assert bank.transfer(alices, bank.everyday("carol"), 1).status_code == 201
    assert bank.transfer(alices, bank.everyday("carol"), 10**15).status_code == 422
    in_doubt = bank.system.flotilla("transfers", "in-doubt", "--json")
    assert (in_doubt.returncode, in_doubt.stdout) == (0, ""), in_doubt.stderr

    committed = {"local": 0.0, "2pc": 0.0}
    for url in bank.system.instance_urls("payments"):
        with httpx.Client(base_url=url, verify=bank.system.operator_tls()) as direct:
            for line in direct.get("/metrics").text.splitlines():
                if line.startswith("flotilla_payments_transfers_total{") and (
                    'outcome="committed"' in line
                ):
                    path = "2pc" if 'path="2pc"' in line else "local"
                    committed[path] += float(line.rsplit(" ", 1)[1])
    assert committed["local"] >= 1
    assert committed["2pc"] >= 1

    audit = bank.system.flotilla("audit", "tail", "--service", "payments", "--json")
    actions = {json.loads(line)["action"] for line in audit.stdout.splitlines()}
    assert {"transfer.requested", "transfer.committed", "transfer.aborted"} <= actions
