"""`flotilla demo`: a guided tour of the running system through the gateway, printing every
request and answer."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from rich.console import Console
from rich.syntax import Syntax

from flotilla_cli.launcher.layout import VarLayout
from flotilla_kit.context import new_span_id, new_trace_id
from flotilla_kit.sharding import shard_of
from flotilla_kit.tls import client_context

__all__ = ["run"]


class _Tour:
    def __init__(self, client: httpx.Client, console: Console) -> None:
        self.client = client
        self.console = console
        self.step = 0
        self.surprises: list[str] = []

    def call(
        self,
        title: str,
        method: str,
        path: str,
        expect: int,
        *,
        token: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        self.step += 1
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.console.rule(f"[bold]{self.step}. {title}")
        shown_headers = {
            k: (v[:24] + "…" if k == "Authorization" else v) for k, v in headers.items()
        }
        self.console.print(f"[cyan]{method} {path}[/] {shown_headers or ''}", highlight=False)
        if "json" in kwargs:
            self.console.print(Syntax(json.dumps(kwargs["json"], indent=2), "json"))
        elif "data" in kwargs:
            safe = {k: ("•••" if k == "password" else v) for k, v in kwargs["data"].items()}
            self.console.print(f"form: {safe}", highlight=False)
        # Every step of the tour is traced (the system samples a few requests of its own):
        # `flotilla trace ID` shows where it went.
        trace_id = new_trace_id()
        headers["traceparent"] = f"00-{trace_id}-{new_span_id()}-01"
        response = self.client.request(method, path, headers=headers, **kwargs)
        colour = "green" if response.status_code == expect else "red"
        self.console.print(
            f"[{colour}]-> {response.status_code}[/] {response.headers.get('content-type', '')}"
            f"  x-request-id: {response.headers.get('x-request-id', '-')}  trace: {trace_id}",
            highlight=False,
        )
        if response.content and "json" not in response.headers.get("content-type", "json"):
            self.console.print(f"({len(response.content)} bytes)", highlight=False)
            body: Any = None
        else:
            body = response.json() if response.content else None
        if isinstance(body, dict) and "access_token" in body:
            body = {**body, "access_token": body["access_token"][:32] + "…",
                    "refresh_token": str(body.get("refresh_token", ""))[:8] + "…"}  # fmt: skip
        if body is not None:
            self.console.print(Syntax(json.dumps(body, indent=2), "json"))
        if response.status_code != expect:
            self.surprises.append(
                f"step {self.step}: expected {expect}, got {response.status_code}"
            )
        return response

    def login(self, username: str, password: str) -> str:
        response = self.call(
            f"{username} logs in (OAuth2 password grant)",
            "POST",
            "/api/v1/auth/token",
            200,
            data={"grant_type": "password", "username": username, "password": password},
        )
        token: str = response.json().get("access_token", "")
        return token


def run(gateway_url: str, layout: VarLayout, console: Console) -> bool:
    credentials = json.loads(layout.credentials_file.read_text())
    passwords = {u["username"]: u["password"] for u in credentials["users"]}
    ids = {u["username"]: u["id"] for u in credentials["users"]}
    with httpx.Client(
        base_url=gateway_url, verify=client_context(layout.tls / "ca.pem"), timeout=30
    ) as client:
        tour = _Tour(client, console)
        tokens = _identity_and_accounts(tour, passwords)
        _transfers(tour, tokens, ids)
        confirmed = _shop(tour, tokens)
        _billing(tour, tokens, confirmed, passwords["sam"])
    console.rule()
    if tour.surprises:
        console.print("[red]Unexpected answers:[/] " + "; ".join(tour.surprises))
        return False
    console.print(f"[green]Every answer was as expected ({tour.step} requests).[/]")
    return True


def _identity_and_accounts(tour: _Tour, passwords: dict[str, str]) -> dict[str, str]:
    """Log in, open and read accounts, see what is refused. Returns the tokens."""
    tour.call("Without a token the gateway refuses", "GET", "/api/v1/accounts", 401)
    tour.call(
        "A wrong password is refused",
        "POST",
        "/api/v1/auth/token",
        400,
        data={"grant_type": "password", "username": "alice", "password": "wrong"},
    )
    alice = tour.login("alice", passwords["alice"])
    listed = tour.call("alice lists her accounts", "GET", "/api/v1/accounts", 200, token=alice)
    opened = tour.call(
        "alice opens an account (idempotent: safe to retry with the same key)",
        "POST",
        "/api/v1/accounts",
        201,
        token=alice,
        json={"name": "Holiday", "currency": "EUR"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    account_id = opened.json().get("id", "missing")
    tour.call("...and reads it back", "GET", f"/api/v1/accounts/{account_id}", 200, token=alice)
    tour.call(
        "Bad input gets a problem+json, not a stack trace",
        "POST",
        "/api/v1/accounts",
        422,
        token=alice,
        json={"name": "Yen", "currency": "XYZ"},
    )
    bob = tour.login("bob", passwords["bob"])
    first_of_alice = listed.json()["items"][0]["id"] if listed.status_code == 200 else account_id
    tour.call(
        "bob cannot see alice's account (404, not 403: ids cannot be probed)",
        "GET",
        f"/api/v1/accounts/{first_of_alice}",
        404,
        token=bob,
    )
    ada = tour.login("ada", passwords["ada"])
    tour.call(
        "ada (admin) deposits 100.00 EUR into alice's new account",
        "POST",
        f"/api/v1/accounts/{account_id}/deposits",
        201,
        token=ada,
        json={"amount_minor": 10_000, "currency": "EUR"},
    )
    return {"alice": alice, "bob": bob, "ada": ada}


def _everyday_account(tour: _Tour, token: str, owner: str, owner_id: str | None) -> str:
    response = tour.call(
        f"{owner}'s accounts" + (" (staff may list anyone's)" if owner_id else ""),
        "GET",
        "/api/v1/accounts",
        200,
        token=token,
        params={"owner_id": owner_id} if owner_id else {},
    )
    items = response.json().get("items", []) if response.status_code == 200 else []
    return next((a["id"] for a in items if a["name"] == "Everyday"), "missing")


def _transfers(tour: _Tour, tokens: dict[str, str], ids: dict[str, str]) -> None:
    """Money between accounts: on one shard, across shards (2PC), refused, replayed."""
    alice, bob = tokens["alice"], tokens["bob"]
    source = _everyday_account(tour, alice, "alice", None)
    to_bob = _everyday_account(tour, bob, "bob", None)
    to_carol = _everyday_account(tour, tokens["ada"], "carol", ids["carol"])

    def path_of(destination: str) -> str:
        same = shard_of(source) == shard_of(destination)
        return "same shard: one local transaction" if same else "another shard: two-phase commit"

    def transfer(title: str, to: str, amount: int, expect: int, key: str) -> httpx.Response:
        return tour.call(
            title,
            "POST",
            "/api/v1/transfers",
            expect,
            token=alice,
            json={
                "from_account": source,
                "to_account": to,
                "amount_minor": amount,
                "currency": "EUR",
                "reference": "demo",
            },
            headers={"Idempotency-Key": key},
        )

    transfer(f"alice sends 25.00 EUR to bob ({path_of(to_bob)})", to_bob, 2_500, 201,
             str(uuid.uuid4()))  # fmt: skip
    key = str(uuid.uuid4())
    sent = transfer(f"alice sends 40.00 EUR to carol ({path_of(to_carol)})", to_carol, 4_000,
                    201, key)  # fmt: skip
    transfer("...sent again with the same key: replayed, not paid twice",
             to_carol, 4_000, 201, key)  # fmt: skip
    transfer("alice cannot send more than she has (nothing moves)", to_carol, 10**12, 422,
             str(uuid.uuid4()))  # fmt: skip
    transfer_id = sent.json().get("id", "missing")
    tour.call("alice reads the transfer", "GET", f"/api/v1/transfers/{transfer_id}", 200,
              token=alice)  # fmt: skip
    tour.call("bob cannot (404: not his)", "GET", f"/api/v1/transfers/{transfer_id}", 404,
              token=bob)  # fmt: skip


_FINAL_WITHIN_S = 20.0


def _until(
    tour: _Tour, condition: Callable[[Any], bool], title: str, path: str, token: str
) -> httpx.Response:
    """GET `path` (quietly) until `condition(body)` holds, then show it as one step."""
    deadline = time.monotonic() + _FINAL_WITHIN_S
    while time.monotonic() < deadline:
        response = tour.client.get(path, headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 200 and condition(response.json()):
            break
        time.sleep(0.1)  # polling a remote state with a deadline: there is no event to await
    return tour.call(title, "GET", path, 200, token=token)


def _order(tour: _Tour, title: str, token: str, lines: list[dict[str, Any]], account: str,
           expect_state: str) -> dict[str, Any]:  # fmt: skip
    placed = tour.call(
        title, "POST", "/api/v1/orders", 202, token=token,
        json={"lines": lines, "payment_account": account},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )  # fmt: skip
    order: dict[str, Any] = placed.json() if placed.status_code == 202 else {"id": "missing"}
    if order.get("state") == "PENDING":
        order = _until(
            tour, lambda o: o["state"] != "PENDING", "...the saga goes on: the order is read again",
            f"/api/v1/orders/{order['id']}", token,
        ).json()  # fmt: skip
    if order.get("state") != expect_state:
        tour.surprises.append(f"step {tour.step}: order {order.get('state')}, not {expect_state}")
    return order


def _shop(tour: _Tour, tokens: dict[str, str]) -> dict[str, Any]:
    """The shop: browse, order (a saga: reserve -> pay -> commit), run out, read the history.
    Returns alice's confirmed order."""
    alice, bob = tokens["alice"], tokens["bob"]
    catalogue = tour.call("Anyone may browse the catalogue", "GET", "/api/v1/products", 200,
                          params={"limit": 10})  # fmt: skip
    by_sku = {p["sku"]: p for p in catalogue.json().get("items", [])}
    tea, mug = by_sku.get("TEA-EARL-250", {}), by_sku.get("MUG-BLUE", {})
    poster = by_sku.get("POSTER-LTD", {})
    account = _everyday_account(tour, alice, "alice", None)
    confirmed = _order(
        tour, "alice orders 2 teas and a mug, paid from Everyday (stock held, paid, committed)",
        alice, [{"product_id": tea.get("id", "missing"), "quantity": 2},
                {"product_id": mug.get("id", "missing"), "quantity": 1}], account, "CONFIRMED",
    )  # fmt: skip
    tour.call("The stock went down", "GET", f"/api/v1/products/{mug.get('id', 'missing')}", 200)
    bob_account = _everyday_account(tour, bob, "bob", None)
    _order(
        tour, f"bob orders more posters than there are ({poster.get('available')} left): "
        "cancelled, no money moves", bob,
        [{"product_id": poster.get("id", "missing"), "quantity": 1000}], bob_account, "CANCELLED",
    )  # fmt: skip
    tour.call("A product the shop does not sell is refused before anything is written",
              "POST", "/api/v1/orders", 422, token=alice,
              json={"lines": [{"product_id": "nothing-like-it", "quantity": 1}],
                    "payment_account": account},
              headers={"Idempotency-Key": str(uuid.uuid4())})  # fmt: skip
    _until(
        tour, lambda page: any(e["order_id"] == confirmed.get("id") for e in page["items"]),
        "alice's order history (a read model built from the events on NATS)",
        "/api/v1/order-history", alice,
    )  # fmt: skip
    return confirmed


def _billing(tour: _Tour, tokens: dict[str, str], order: dict[str, Any], sam_password: str) -> None:
    """Billing (Django REST framework): the invoice of alice's order, as JSON and as a PDF,
    hidden from bob; support refunds the order and a credit note follows."""
    alice, bob = tokens["alice"], tokens["bob"]
    order_id = order.get("id", "missing")

    def document_of(kind: str) -> Callable[[Any], bool]:
        return lambda page: any(
            d["order_id"] == order_id and d["kind"] == kind for d in page["items"]
        )

    page = _until(
        tour, document_of("invoice"),
        "billing issued alice's invoice (from order_confirmed, through its inbox on NATS)",
        "/api/v1/invoices", alice,
    ).json()  # fmt: skip
    invoice: dict[str, Any] = next(
        (d for d in page.get("items", []) if d["order_id"] == order_id), {}
    )
    path = f"/api/v1/invoices/{invoice.get('id', 'missing')}"
    tour.call("alice reads her invoice: lines, VAT, totals in minor units", "GET", path, 200,
              token=alice)  # fmt: skip
    pdf = tour.call("...and as a PDF", "GET", path, 200, token=alice,
                    headers={"Accept": "application/pdf"})  # fmt: skip
    if pdf.status_code == 200 and not pdf.content.startswith(b"%PDF-"):
        tour.surprises.append(f"step {tour.step}: the PDF is not a PDF")
    tour.call("bob asks for alice's invoice: the same 404 as for one that does not exist",
              "GET", path, 404, token=bob)  # fmt: skip
    tour.call("An Accept billing cannot serve is a 406 problem", "GET", path, 406, token=alice,
              headers={"Accept": "text/csv"})  # fmt: skip
    sam = tour.login("sam", sam_password)
    tour.call("sam (support) refunds alice's order in full (money back from the shop)",
              "POST", f"/api/v1/orders/{order_id}/refund", 202, token=sam)  # fmt: skip
    _until(
        tour, document_of("credit_note"),
        "billing issued a credit note for it (from order_refunded)", "/api/v1/invoices", alice,
    )  # fmt: skip
