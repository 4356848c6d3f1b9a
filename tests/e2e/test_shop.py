"""The shop through the gateway, on a whole system: an order is a saga over inventory
(gRPC), payments (two-phase commit across ledger shards) and NATS (events, the history's
read model). Each test checks the stock and the money, not only the order's state."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.system import RunningSystem

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"
FINAL_WITHIN_S = 30.0


@dataclass
class Shop:
    system: RunningSystem
    client: httpx.Client
    tokens: dict[str, str]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def new_product(self, on_hand: int, price_minor: int = 1_000) -> str:
        sku = f"E2E-{uuid.uuid4().hex[:10].upper()}"
        response = self.client.post(
            "/api/v1/products",
            headers={**self.auth("ada"), "Idempotency-Key": str(uuid.uuid4())},
            json={"sku": sku, "name": f"Test {sku}", "price_minor": price_minor,
                  "currency": "EUR", "on_hand": on_hand},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        product_id: str = response.json()["id"]
        return product_id

    def product(self, product_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/products/{product_id}")
        assert response.status_code == 200, response.text
        product: dict[str, Any] = response.json()
        return product

    def account(self, user: str, name: str = "Everyday") -> dict[str, Any]:
        response = self.client.get("/api/v1/accounts", headers=self.auth(user))
        assert response.status_code == 200, response.text
        account: dict[str, Any] = next(a for a in response.json()["items"] if a["name"] == name)
        return account

    def open_account(self, user: str, deposit_minor: int) -> str:
        opened = self.client.post(
            "/api/v1/accounts", headers={**self.auth(user), "Idempotency-Key": str(uuid.uuid4())},
            json={"name": f"Small {uuid.uuid4().hex[:6]}", "currency": "EUR"},
        )  # fmt: skip
        assert opened.status_code == 201, opened.text
        account_id: str = opened.json()["id"]
        if deposit_minor:
            deposited = self.client.post(
                f"/api/v1/accounts/{account_id}/deposits", headers=self.auth("ada"),
                json={"amount_minor": deposit_minor, "currency": "EUR"},
            )  # fmt: skip
            assert deposited.status_code == 201, deposited.text
        return account_id

    def balance(self, user: str, account_id: str) -> int:
        response = self.client.get(f"/api/v1/accounts/{account_id}", headers=self.auth(user))
        assert response.status_code == 200, response.text
        balance: int = response.json()["balance_minor"]
        return balance

    def place(
        self, user: str, lines: list[tuple[str, int]], account_id: str, key: str | None = None
    ) -> httpx.Response:
        return self.client.post(
            "/api/v1/orders",
            headers={**self.auth(user), "Idempotency-Key": key or str(uuid.uuid4())},
            json={"lines": [{"product_id": p, "quantity": q} for p, q in lines],
                  "payment_account": account_id},
        )  # fmt: skip

    def final(self, user: str, order: dict[str, Any]) -> dict[str, Any]:
        """The order once its saga has finished (the POST waits a while, not always enough)."""
        deadline = time.monotonic() + FINAL_WITHIN_S
        while order["state"] == "PENDING":
            assert time.monotonic() < deadline, f"order {order['id']} still PENDING"
            time.sleep(0.05)  # polling another process's state: there is no event to await
            response = self.client.get(f"/api/v1/orders/{order['id']}", headers=self.auth(user))
            assert response.status_code == 200, response.text
            order = response.json()
        return order

    def order(self, user: str, lines: list[tuple[str, int]], account_id: str) -> dict[str, Any]:
        placed = self.place(user, lines, account_id)
        assert placed.status_code == 202, placed.text
        assert placed.headers["location"].endswith(placed.json()["id"])
        return self.final(user, placed.json())

    def history_entry(self, user: str, order_id: str) -> dict[str, Any]:
        """The read model is eventually consistent: wait for the order's events to arrive."""
        deadline = time.monotonic() + FINAL_WITHIN_S
        while True:
            page = self.client.get("/api/v1/order-history", headers=self.auth(user))
            assert page.status_code == 200, page.text
            items: list[dict[str, Any]] = page.json()["items"]
            entry = next((e for e in items if e["order_id"] == order_id), None)
            if entry is not None and entry["state"] != "PENDING":
                return entry
            assert time.monotonic() < deadline, f"order {order_id} not in the history"
            time.sleep(0.05)  # the events travel through NATS to another consumer


@pytest.fixture(scope="module")
def shop(system: RunningSystem) -> Iterator[Shop]:
    tokens = {user: system.token(user) for user in ("alice", "bob", "carol", "ada", "sam", "shop")}
    with system.client() as client:
        yield Shop(system, client, tokens)


def test_an_order_is_confirmed_and_moves_stock_and_money_once(shop: Shop) -> None:
    tea, mug = shop.new_product(on_hand=10, price_minor=650), shop.new_product(5, 1_200)
    account = shop.account("alice")["id"]
    takings = shop.account("shop", "Takings")["id"]
    before, takings_before = shop.balance("alice", account), shop.balance("shop", takings)
    order = shop.order("alice", [(tea, 2), (mug, 1)], account)
    assert order["state"] == "CONFIRMED", order
    assert order["total_minor"] == 2 * 650 + 1_200
    assert order["currency"] == "EUR"
    assert [line["unit_price_minor"] for line in order["lines"]] == [650, 1_200]
    assert order["payment_transfer_id"]
    assert order["refund_transfer_id"] is None
    assert shop.balance("alice", account) == before - order["total_minor"]
    assert shop.balance("shop", takings) == takings_before + order["total_minor"]
    assert (shop.product(tea)["on_hand"], shop.product(tea)["available"]) == (8, 8)
    assert (shop.product(mug)["on_hand"], shop.product(mug)["available"]) == (4, 4)
    transfer = shop.client.get(
        f"/api/v1/transfers/{order['payment_transfer_id']}", headers=shop.auth("alice")
    )  # the customer sees the payment made on their behalf
    assert transfer.status_code == 200, transfer.text
    assert transfer.json()["amount_minor"] == order["total_minor"]
    entry = shop.history_entry("alice", order["id"])
    assert entry["state"] == "CONFIRMED"
    assert entry["total_minor"] == order["total_minor"]


def test_out_of_stock_cancels_and_touches_no_money(shop: Shop) -> None:
    scarce = shop.new_product(on_hand=2)
    account = shop.account("bob")["id"]
    before = shop.balance("bob", account)
    order = shop.order("bob", [(scarce, 3)], account)
    assert (order["state"], order["reason"]) == ("CANCELLED", "out-of-stock"), order
    assert order["payment_transfer_id"] is None
    assert shop.balance("bob", account) == before
    assert (shop.product(scarce)["on_hand"], shop.product(scarce)["available"]) == (2, 2)
    entry = shop.history_entry("bob", order["id"])
    assert (entry["state"], entry["reason"]) == ("CANCELLED", "out-of-stock")


def test_insufficient_funds_cancels_and_releases_the_stock(shop: Shop) -> None:
    lamp = shop.new_product(on_hand=4, price_minor=4_900)
    poor = shop.open_account("carol", deposit_minor=5_000)  # enough for one lamp, not two
    order = shop.order("carol", [(lamp, 2)], poor)
    assert (order["state"], order["reason"]) == ("CANCELLED", "insufficient-funds"), order
    assert shop.balance("carol", poor) == 5_000
    assert (shop.product(lamp)["on_hand"], shop.product(lamp)["available"]) == (4, 4)
    # The same customer, the same account, one lamp: now it fits.
    assert shop.order("carol", [(lamp, 1)], poor)["state"] == "CONFIRMED"
    assert shop.balance("carol", poor) == 100
    assert shop.product(lamp)["on_hand"] == 3


def test_the_same_idempotency_key_makes_one_order(shop: Shop) -> None:
    tea = shop.new_product(on_hand=10)
    account = shop.account("alice")["id"]
    before = shop.balance("alice", account)
    key = str(uuid.uuid4())
    first = shop.place("alice", [(tea, 1)], account, key)
    again = shop.place("alice", [(tea, 1)], account, key)
    assert first.status_code == again.status_code == 202
    assert again.headers.get("idempotency-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert shop.final("alice", first.json())["state"] == "CONFIRMED"
    other_body = shop.place("alice", [(tea, 2)], account, key)
    assert (other_body.status_code, other_body.json()["type"].rsplit("/", 1)[-1]) == (
        422, "idempotency-key-reused",
    )  # fmt: skip
    assert shop.product(tea)["on_hand"] == 9
    assert shop.balance("alice", account) == before - 1_000


def test_the_last_items_go_to_exactly_as_many_buyers_as_there_are(shop: Shop) -> None:
    """Eight customers race for three items: three orders confirmed, nothing oversold."""
    last = shop.new_product(on_hand=3)
    buyers = [("alice", shop.account("alice")["id"]), ("carol", shop.account("carol")["id"])] * 4

    def buy(buyer: tuple[str, str]) -> dict[str, Any]:
        with shop.system.client() as client:
            placed = Shop(shop.system, client, shop.tokens).place(buyer[0], [(last, 1)], buyer[1])
            assert placed.status_code == 202, placed.text
            return Shop(shop.system, client, shop.tokens).final(buyer[0], placed.json())

    with ThreadPoolExecutor(len(buyers)) as pool:
        orders = list(pool.map(buy, buyers))
    states = sorted((o["state"], o["reason"]) for o in orders)
    assert states == [("CANCELLED", "out-of-stock")] * 5 + [("CONFIRMED", None)] * 3
    assert (shop.product(last)["on_hand"], shop.product(last)["available"]) == (0, 0)


@pytest.mark.parametrize(
    ("user", "body", "key", "status", "problem"),
    [
        ("alice", {"lines": [{"product_id": "no-such-thing", "quantity": 1}]}, "k", 422,
         "unknown-product"),
        ("alice", {"lines": []}, "k", 422, "validation-error"),
        ("alice", {"lines": [{"product_id": "P", "quantity": 0}]}, "k", 422, "validation-error"),
        ("alice", {"lines": [{"product_id": "P", "quantity": 1.5}]}, "k", 422,
         "validation-error"),
        ("alice", {"lines": [{"product_id": "P", "quantity": 1}]}, None, 400,
         "idempotency-key-required"),
        ("alice", {"lines": [{"product_id": "P", "quantity": 1}], "coupon": "FREE"}, "k", 422,
         "validation-error"),
        ("bob", {"lines": [{"product_id": "P", "quantity": 1}]}, "k", 422,
         "payment-account-invalid"),  # alice's account, bob's token
        ("sam", {"lines": [{"product_id": "P", "quantity": 1}]}, "k", 403, "forbidden"),
        (None, {"lines": [{"product_id": "P", "quantity": 1}]}, "k", 401, "unauthenticated"),
    ],
)  # fmt: skip
def test_a_bad_order_is_refused_with_a_problem_and_writes_nothing(
    shop: Shop, user: str | None, body: dict[str, Any], key: str | None, status: int,
    problem: str,
) -> None:  # fmt: skip
    product = shop.new_product(on_hand=5)
    account = shop.account("alice")["id"]
    lines = [{**line, "product_id": product} if line["product_id"] == "P" else line
             for line in body["lines"]]  # fmt: skip
    headers = {**(shop.auth(user) if user else {}), **({"Idempotency-Key": key + uuid.uuid4().hex}
               if key else {})}  # fmt: skip
    mine_before = shop.client.get("/api/v1/orders", headers=shop.auth("alice")).json()["items"]
    response = shop.client.post(
        "/api/v1/orders", headers=headers,
        json={**body, "lines": lines, "payment_account": account},
    )  # fmt: skip
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].rsplit("/", 1)[-1] == problem
    assert "Traceback" not in response.text
    assert shop.product(product)["available"] == 5
    mine_after = shop.client.get("/api/v1/orders", headers=shop.auth("alice")).json()["items"]
    assert mine_after == mine_before


def test_malformed_json_is_a_400_problem(shop: Shop) -> None:
    response = shop.client.post(
        "/api/v1/orders",
        headers={**shop.auth("alice"), "Idempotency-Key": str(uuid.uuid4()),
                 "content-type": "application/json"},
        content=b'{"lines": [',
    )  # fmt: skip
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("malformed-json")


def test_nobody_reads_another_customers_order(shop: Shop) -> None:
    tea = shop.new_product(on_hand=3)
    order = shop.order("alice", [(tea, 1)], shop.account("alice")["id"])
    theirs = shop.client.get(f"/api/v1/orders/{order['id']}", headers=shop.auth("bob"))
    missing = shop.client.get(f"/api/v1/orders/ord_{uuid.uuid4().hex}", headers=shop.auth("bob"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["type"] == missing.json()["type"]
    staff = shop.client.get(f"/api/v1/orders/{order['id']}", headers=shop.auth("sam"))
    assert staff.status_code == 200
    assert staff.json()["id"] == order["id"]


def _document(shop: Shop, user: str, order_id: str, kind: str) -> dict[str, Any]:
    """Billing's document of `kind` for the order, once its event has reached billing."""
    deadline = time.monotonic() + FINAL_WITHIN_S
    while True:
        page = shop.client.get("/api/v1/invoices", headers=shop.auth(user))
        assert page.status_code == 200, page.text
        found = [d for d in page.json()["items"] if d["order_id"] == order_id and d["kind"] == kind]
        if found:
            (document,) = found
            documented: dict[str, Any] = document
            return documented
        assert time.monotonic() < deadline, f"no {kind} for order {order_id}"
        time.sleep(0.05)  # the event travels through NATS to billing's consumer


def test_a_confirmed_order_gets_an_invoice_its_owner_reads_as_json_and_pdf(shop: Shop) -> None:
    tea, mug = shop.new_product(on_hand=10, price_minor=650), shop.new_product(5, 1_199)
    order = shop.order("alice", [(tea, 2), (mug, 1)], shop.account("alice")["id"])
    assert order["state"] == "CONFIRMED", order
    invoice = _document(shop, "alice", order["id"], "invoice")
    assert invoice["customer_id"] == order["customer_id"]
    assert invoice["total_minor"] == order["total_minor"] == 2 * 650 + 1_199
    assert invoice["net_minor"] + invoice["vat_minor"] == invoice["total_minor"]
    assert sum(line["amount_minor"] for line in invoice["lines"]) == invoice["total_minor"]
    assert invoice["transfer_id"] == order["payment_transfer_id"]
    year, number = invoice["number"].split("-")
    assert (len(year), len(number)) == (4, 6)
    path = f"/api/v1/invoices/{invoice['id']}"
    as_json = shop.client.get(path, headers=shop.auth("alice"))
    assert as_json.status_code == 200, as_json.text
    assert as_json.json() == invoice
    pdf = shop.client.get(path, headers={**shop.auth("alice"), "Accept": "application/pdf"})
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    # Someone else's invoice is the same 404 as one that does not exist; staff read it.
    theirs = shop.client.get(path, headers=shop.auth("bob"))
    missing = shop.client.get(f"/api/v1/invoices/{uuid.uuid4()}", headers=shop.auth("bob"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.headers["content-type"] == PROBLEM
    assert theirs.json()["type"] == missing.json()["type"]
    assert shop.client.get(path, headers=shop.auth("sam")).status_code == 200
    unacceptable = shop.client.get(path, headers={**shop.auth("alice"), "Accept": "text/csv"})
    assert unacceptable.status_code == 406
    assert unacceptable.headers["content-type"] == PROBLEM


def test_a_refunded_order_gets_a_credit_note_for_its_invoice(shop: Shop) -> None:
    tea = shop.new_product(on_hand=4, price_minor=999)
    account = shop.account("alice")["id"]
    order = shop.order("alice", [(tea, 3)], account)
    invoice = _document(shop, "alice", order["id"], "invoice")
    before = shop.balance("alice", account)
    refused = shop.client.post(f"/api/v1/orders/{order['id']}/refund", headers=shop.auth("alice"))
    assert refused.status_code == 403  # a customer does not refund themselves
    refunded = shop.client.post(f"/api/v1/orders/{order['id']}/refund", headers=shop.auth("sam"))
    assert refunded.status_code == 202, refunded.text
    note = _document(shop, "alice", order["id"], "credit_note")
    assert note["credits_number"] == invoice["number"]
    assert note["total_minor"] == -invoice["total_minor"] == -3 * 999
    assert note["number"] > invoice["number"]
    assert shop.balance("alice", account) == before + order["total_minor"]
