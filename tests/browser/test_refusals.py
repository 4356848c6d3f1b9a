"""What the pages refuse, as the browser shows it: the console to a customer (403 page),
another customer's account (404 page), a POST with a forged or missing CSRF token (403,
nothing changed), a tampered session cookie and an expired session (back to the login
form, the cookie cleared), an invalid amount (the error next to its field, no transfer).

The expired session is opened before the package's first test and left unused
(`idle_session`); its test waits for whatever is left of the idle timeout."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.browser.harness import SESSION_COOKIE, SESSION_IDLE_S, Api, IdleSession, Visitor

pytestmark = pytest.mark.e2e


def _error_page(visitor: Visitor, heading: str) -> None:
    """The HTML error page, its <h1> naming the problem; never a stack trace."""
    expect(visitor.page.locator("main h1")).to_contain_text(heading, ignore_case=True)
    assert "Traceback" not in visitor.page.content()


def test_a_customer_gets_the_403_page_for_the_console(visitor: Visitor) -> None:
    visitor.login("alice")
    visitor.allow(403)
    response = visitor.open("/console", status=403)
    assert response.headers["content-type"].startswith("text/html")
    _error_page(visitor, "forbidden")
    visitor.shoot("forbidden")


def test_a_customer_gets_the_404_page_for_another_customers_account(
    visitor: Visitor, api: Api
) -> None:
    bobs = api.account("bob")["id"]
    visitor.login("alice")
    visitor.allow(404)
    response = visitor.open(f"/accounts/{bobs}", status=404)
    assert response.headers["content-type"].startswith("text/html")
    _error_page(visitor, "not found")
    assert bobs not in visitor.page.locator("main").inner_text()


@pytest.mark.parametrize("token", ["forged", "missing"])
def test_a_post_without_the_right_csrf_token_is_refused_and_changes_nothing(
    visitor: Visitor, api: Api, token: str
) -> None:
    page = visitor.page
    mine, theirs = api.account("alice"), api.account("bob")
    before = api.balance("alice", mine["id"]), api.balance("bob", theirs["id"])
    sent_before = len(api.transfers("alice"))
    visitor.login("alice")
    visitor.open("/transfer")
    page.get_by_label("From").select_option(mine["id"])
    page.get_by_label("To account").fill(theirs["id"])
    page.get_by_label("Amount").fill("1.00")
    field = page.locator("form[action='/transfer'] input[name=csrf_token]")
    if token == "forged":
        field.evaluate("f => { f.value = 'A'.repeat(43); }")
    else:
        field.evaluate("f => f.remove()")
    visitor.allow(403)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Send").click()
    assert answer.value.status == 403
    page.wait_for_load_state()
    _error_page(visitor, "forbidden")
    assert len(api.transfers("alice")) == sent_before
    assert (api.balance("alice", mine["id"]), api.balance("bob", theirs["id"])) == before


def test_a_tampered_session_cookie_leads_back_to_the_login_form(visitor: Visitor) -> None:
    visitor.login("alice")
    value = visitor.cookie(SESSION_COOKIE)
    assert value
    tampered = value[:-1] + ("A" if value[-1] != "A" else "B")
    visitor.context.add_cookies(
        [{"name": SESSION_COOKIE, "value": tampered, "url": f"{visitor.system.gateway_url}/",
          "secure": True, "httpOnly": True, "sameSite": "Strict"}]
    )  # fmt: skip
    assert visitor.cookie(SESSION_COOKIE) == tampered
    visitor.page.goto("/accounts")
    visitor.expect_login_page("/accounts")


def test_an_invalid_amount_is_shown_next_to_its_field_and_sends_nothing(
    visitor: Visitor, api: Api
) -> None:
    page = visitor.page
    mine, theirs = api.account("alice"), api.account("bob")
    sent_before = len(api.transfers("alice"))
    visitor.login("alice")
    visitor.allow(400)
    for amount in ("12.345", "twelve", "-5"):
        visitor.open("/transfer")
        page.get_by_label("From").select_option(mine["id"])
        page.get_by_label("To account").fill(theirs["id"])
        page.get_by_label("Amount").fill(amount)
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.get_by_role("button", name="Send").click()
        assert answer.value.status == 400, amount
        page.wait_for_load_state()
        error = page.locator(".field:has(#amount) p.field-error#amount-error")
        expect(error).to_be_visible()
        assert error.inner_text().strip(), amount
        expect(page.get_by_label("Amount")).to_have_attribute("aria-describedby", "amount-error")
        expect(page.get_by_label("Amount")).to_have_value(amount)  # kept, to correct it
        assert "Traceback" not in page.content()
    visitor.shoot("transfer-invalid")
    assert len(api.transfers("alice")) == sent_before


def test_an_expired_session_leads_back_to_the_login_form(idle_session: IdleSession) -> None:
    """The session opened before the first test has been idle since."""
    idle_for = time.monotonic() - idle_session.last_used
    if idle_for < SESSION_IDLE_S + 1:
        time.sleep(SESSION_IDLE_S + 1 - idle_for)  # the timeout itself is what is awaited
    visitor = idle_session.visitor
    visitor.page.goto("/accounts")
    visitor.expect_login_page("/accounts")
    assert not visitor.console.unexpected(), visitor.console.messages
