"""A customer in the browser: logs in, sees the accounts with their balances, sends money
(201 or 202, said honestly), and a double click pays once; fills a basket, checks out,
and watches the order go from PENDING to CONFIRMED on its page without reloading it.
Each step is checked against the server's state through the API too."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest
from playwright.sync_api import expect

from tests.browser.harness import Api, Visitor, money, wait_until
from tests.e2e.system import RunningSystem

pytestmark = pytest.mark.e2e

_RESULT_HEADING = {"201": "Transfer completed", "202": "Transfer accepted; it is finishing"}


def _amount() -> tuple[int, str]:
    """An amount of this test's own (1.01 to 9.99 EUR), to find its transfer by (among
    the transfers made since the test began)."""
    minor = random.randint(101, 999)
    return minor, f"{minor // 100}.{minor % 100:02d}"


def _fill_transfer(visitor: Visitor, from_account: str, to_account: str, amount: str) -> None:
    visitor.open("/transfer")
    page = visitor.page
    page.get_by_label("From").select_option(from_account)
    page.get_by_label("To account").fill(to_account)
    page.get_by_label("Amount").fill(amount)


def _sent(api: Api, sender: str, to_account: str, amount_minor: int) -> set[str]:
    """The ids of the sender's transfers of this amount to that account."""
    return {
        t["id"]
        for t in api.transfers(sender)
        if t["to_account"] == to_account and t["amount_minor"] == amount_minor
    }


def test_a_customer_logs_in_sees_the_balances_and_sends_money(visitor: Visitor, api: Api) -> None:
    page = visitor.page
    visitor.open("/")
    assert visitor.path() == "/login", "the start page of a visitor is the login form"
    visitor.shoot("login")

    visitor.login("alice")
    assert visitor.path() == "/accounts"
    accounts = api.accounts("alice")
    assert accounts
    for account in accounts:
        row = page.locator("main tr", has=page.get_by_role("link", name=account["id"]))
        expect(row).to_contain_text(money(account["balance_minor"], account["currency"]))
    visitor.shoot("accounts")

    mine, theirs = api.account("alice"), api.account("bob")
    page.get_by_role("link", name=mine["id"]).click()
    page.wait_for_url(f"**/accounts/{mine['id']}")
    expect(page.locator("#balance")).to_have_text(money(mine["balance_minor"]))
    visitor.shoot("account")

    minor, text = _amount()
    mine_before = api.balance("alice", mine["id"])
    theirs_before = api.balance("bob", theirs["id"])
    sent_before = _sent(api, "alice", theirs["id"], minor)
    _fill_transfer(visitor, mine["id"], theirs["id"], text)
    visitor.shoot("transfer")
    page.get_by_role("button", name="Send").click()

    result = page.locator("#transfer-result")
    expect(result).to_have_attribute("data-status", re.compile(r"^20[12]$"))
    status = result.get_attribute("data-status") or ""
    expect(result.get_by_role("heading")).to_have_text(_RESULT_HEADING[status])
    visitor.shoot("transfer-result")
    # A 202 finishes on its own: the money arrives either way, once.
    wait_until(
        "bob has the money", lambda: api.balance("bob", theirs["id"]) == theirs_before + minor
    )
    assert api.balance("alice", mine["id"]) == mine_before - minor
    assert len(_sent(api, "alice", theirs["id"], minor) - sent_before) == 1


def test_a_double_click_on_send_pays_once(visitor: Visitor, api: Api) -> None:
    """The page's idempotency key makes the same form one transfer, however often it is
    sent: a double click, then the very same form sent again by the browser."""
    page = visitor.page
    visitor.login("alice")
    mine, theirs = api.account("alice"), api.account("bob")
    theirs_before = api.balance("bob", theirs["id"])
    minor, text = _amount()
    sent_before = _sent(api, "alice", theirs["id"], minor)
    _fill_transfer(visitor, mine["id"], theirs["id"], text)
    form = page.locator("form[action='/transfer']")
    sent_form = form.evaluate("f => Object.fromEntries(new FormData(f))")
    assert re.fullmatch(r"[0-9a-f-]{36}", sent_form["idempotency_key"]), sent_form

    page.get_by_role("button", name="Send").dblclick()
    expect(page.locator("#transfer-result")).to_have_attribute(
        "data-status", re.compile(r"^20[12]$")
    )
    # The same form once more (as a second click that got through would send it).
    again = page.evaluate(
        """async fields => {
            const answer = await fetch("/transfer", {method: "POST",
                body: new URLSearchParams(fields), credentials: "same-origin"});
            return {status: answer.status, html: await answer.text()};
        }""",
        sent_form,
    )
    assert again["status"] == 200, again
    assert re.search(r'id="transfer-result" data-status="20[12]"', again["html"]), again["html"]

    wait_until(
        "bob has the money", lambda: api.balance("bob", theirs["id"]) == theirs_before + minor
    )
    assert len(_sent(api, "alice", theirs["id"], minor) - sent_before) == 1
    assert api.balance("bob", theirs["id"]) == theirs_before + minor


@contextmanager
def _payments_paused(system: RunningSystem) -> Iterator[None]:
    """Every payments instance paused (SIGSTOP): an order's saga waits for its payment
    (asked again with the same key until payments answers), so the order is PENDING for
    as long as this lasts. Checking out itself asks inventory and accounts, not payments."""
    processes = [
        psutil.Process(i["pid"])
        for i in system.status()["instances"]
        if i["service"] == "payments" and i["command"] == "serve"
    ]
    assert processes
    for process in processes:
        process.suspend()
    try:
        yield
    finally:
        for process in processes:
            process.resume()


def test_a_customer_orders_and_watches_the_order_confirmed_live(
    visitor: Visitor, api: Api, system: RunningSystem
) -> None:
    page = visitor.page
    name = f"Browser tea {random.randint(1000, 9999)}"
    product_id = api.new_product(name, price_minor=650, on_hand=5)
    visitor.login("alice")
    account = api.account("alice")

    visitor.open("/shop")
    card = page.locator("li.product", has=page.get_by_role("heading", name=name))
    expect(card).to_contain_text(money(650))
    expect(card).to_contain_text("5 in stock")
    visitor.shoot("shop")
    card.get_by_label("Quantity").fill("2")
    card.get_by_role("button", name="Add to basket").click()
    page.wait_for_load_state()

    visitor.open("/basket")
    line = page.locator("main tbody tr", has_text=name)
    expect(line).to_contain_text("2")
    expect(page.locator("#basket-total")).to_have_text(money(1_300))
    page.get_by_label("Pay from").select_option(account["id"])
    visitor.shoot("basket")

    status = page.locator("#order-status")
    with _payments_paused(system):
        page.get_by_role("button", name="Place order").click()
        page.wait_for_url(re.compile(r"/orders/[^/?]+$"))
        expect(status).to_have_attribute("data-status", "PENDING")
        page.evaluate("window.flotillaTestNoReload = true")  # gone if the page reloads
        visitor.shoot("order-pending")
    order_id = visitor.path().rsplit("/", 1)[-1]

    expect(status).to_have_attribute("data-status", "CONFIRMED", timeout=30_000)
    expect(status).to_have_text("CONFIRMED")
    assert page.evaluate("window.flotillaTestNoReload") is True, "the page was reloaded"
    visitor.shoot("order")
    order = api.order("alice", order_id)
    assert (order["state"], order["total_minor"]) == ("CONFIRMED", 1_300)
    assert order["payment_account"] == account["id"]
    assert api.product(product_id)["on_hand"] == 3

    visitor.open("/orders")
    row = page.locator("main tr", has=page.get_by_role("link", name=order_id))
    expect(row).to_contain_text("CONFIRMED")
    expect(row).to_contain_text(money(1_300))
    visitor.shoot("orders")
