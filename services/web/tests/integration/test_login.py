"""Logging in and out: the session cookie, where the browser goes, bad credentials, the
login form's double-submit CSRF token, and that no token ever reaches the browser."""

from __future__ import annotations

import re

import httpx
import pytest

from flotilla_web.domain import new_secret
from services.web.tests.integration.conftest import (
    CSRF,
    PASSWORD,
    SESSION,
    Site,
    csrf_of,
    log_in,
    page_csrf,
)


def _set_cookies(answer: httpx.Response, name: str) -> list[str]:
    return [v for v in answer.headers.get_list("set-cookie") if v.startswith(f"{name}=")]


async def test_login_sets_a_strict_host_cookie_and_no_token_reaches_the_browser(
    site: Site, browser: httpx.AsyncClient
) -> None:
    form = await browser.get("/login")
    assert form.status_code == 200
    assert 'for="username">User name<' in form.text
    assert 'for="password">Password<' in form.text
    login_cookie = _set_cookies(form, CSRF)
    assert len(login_cookie) == 1
    assert login_cookie[0].endswith("; Path=/; HttpOnly; Secure; SameSite=Strict")
    assert f"{CSRF}={csrf_of(form.text)};" in login_cookie[0]  # the double submit

    answer = await browser.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_of(form.text)}
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/accounts"
    (cookie,) = _set_cookies(answer, SESSION)
    assert re.fullmatch(
        rf"{SESSION}=[A-Za-z0-9_-]{{43}}; Path=/; HttpOnly; Secure; SameSite=Strict", cookie
    ), cookie

    seen = [form, answer]
    for path in ("/accounts", f"/accounts/{site.alice_eur}", "/transfer", "/shop", "/basket",
                 "/orders", "/invoices"):  # fmt: skip
        page = await browser.get(path)
        assert page.status_code == 200, (path, page.text)
        seen.append(page)
    assert "100.00 EUR" in seen[2].text
    issued = site.world.issued_tokens
    assert len(issued) == 2  # one access token, one refresh token
    for page in seen:
        everything = page.text + "".join(f"{k}: {v}\n" for k, v in page.headers.multi_items())
        for token in issued:
            assert token not in everything, page.url


async def test_the_start_page_sends_each_user_where_they_work(
    site: Site, browser: httpx.AsyncClient
) -> None:
    assert (await browser.get("/")).headers["location"] == "/login"
    assert (await log_in(browser)).headers["location"] == "/accounts"
    assert (await browser.get("/")).headers["location"] == "/accounts"
    assert (await browser.get("/login")).headers["location"] == "/accounts"  # logged in already
    async with site.browser() as support:
        assert (await log_in(support, "sam")).headers["location"] == "/console"
        page = await support.get("/accounts")
        assert '<a href="/console">Console</a>' in page.text
    assert "/console" not in (await browser.get("/accounts")).text  # not for a customer


@pytest.mark.parametrize(
    ("next_path", "goes_to"),
    [
        ("/orders/123?tab=lines", "/orders/123?tab=lines"),
        ("https://evil.example/", "/accounts"),
        ("//evil.example/x", "/accounts"),
        ("/\\evil.example", "/accounts"),
        ("/logout", "/accounts"),
        ("accounts", "/accounts"),
    ],
)
async def test_after_login_the_browser_goes_to_next_only_within_the_site(
    site: Site, browser: httpx.AsyncClient, next_path: str, goes_to: str
) -> None:
    answer = await log_in(browser, next=next_path)
    assert answer.status_code == 303
    assert answer.headers["location"] == goes_to


async def test_a_page_without_a_session_sends_to_login_and_back(
    site: Site, browser: httpx.AsyncClient
) -> None:
    answer = await browser.get("/orders?x=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/orders%3Fx%3D1"
    form = await browser.get(answer.headers["location"])
    assert 'name="next" value="/orders?x=1"' in form.text
    assert (await log_in(browser, next="/orders?x=1")).headers["location"] == "/orders?x=1"


async def test_bad_credentials_are_a_401_form_with_an_alert(
    site: Site, browser: httpx.AsyncClient
) -> None:
    answer = await log_in(browser, password="wrong password!")
    assert answer.status_code == 401
    assert '<p role="alert" id="login-error" class="alert">Wrong user name or password.</p>' in (
        answer.text
    )
    assert 'value="alice"' in answer.text  # the user name stays, the password does not
    assert not _set_cookies(answer, SESSION)
    assert (await browser.get("/accounts")).status_code == 303


async def test_empty_fields_are_a_400_with_errors_next_to_the_fields(
    site: Site, browser: httpx.AsyncClient
) -> None:
    form = await browser.get("/login")
    answer = await browser.post(
        "/login", data={"username": " ", "password": "", "csrf_token": csrf_of(form.text)}
    )
    assert answer.status_code == 400
    for name in ("username", "password"):
        assert f'<p class="field-error" id="{name}-error">' in answer.text
        assert re.search(rf'<input id="{name}"[^>]*aria-describedby="{name}-error"', answer.text)
    assert site.world.calls == []  # nothing was asked of auth


@pytest.mark.parametrize("token", [None, "forged-" + "x" * 36])
async def test_a_login_without_the_double_submit_token_is_refused(
    site: Site, browser: httpx.AsyncClient, token: str | None
) -> None:
    await browser.get("/login")  # the browser has the cookie; the form below lacks its twin
    data = {"username": "alice", "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    answer = await browser.post("/login", data=data)
    assert answer.status_code == 403
    assert "<h1>Forbidden: the form could not be trusted</h1>" in answer.text
    assert site.world.calls == []


async def test_logout_revokes_the_session_and_clears_the_cookie(
    site: Site, alice: httpx.AsyncClient
) -> None:
    cookie = alice.cookies[SESSION]
    refresh_token = site.world.issued_tokens[1]
    answer = await alice.post("/logout", data={"csrf_token": await page_csrf(alice)})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    (cleared,) = _set_cookies(answer, SESSION)
    assert "Max-Age=0" in cleared
    (logout,) = site.world.calls_to("POST", "/api/v1/auth/logout")
    assert logout.token is None  # the refresh token goes in the form, not as a bearer
    assert site.world.refresh_tokens[refresh_token][1] in site.world.revoked_sessions
    # The old cookie opens nothing any more.
    async with site.browser() as thief:
        thief.cookies.set(SESSION, cookie, domain="web.test")
        assert (await thief.get("/accounts")).status_code == 303


async def test_logout_needs_the_sessions_csrf_token(site: Site, alice: httpx.AsyncClient) -> None:
    for data in ({}, {"csrf_token": "x" * 43}):
        answer = await alice.post("/logout", data=data)
        assert answer.status_code == 403, answer.text
    assert site.world.calls_to("POST", "/api/v1/auth/logout") == []
    assert (await alice.get("/accounts")).status_code == 200  # still logged in


async def test_logging_in_again_ends_the_previous_session(
    site: Site, alice: httpx.AsyncClient
) -> None:
    first = alice.cookies[SESSION]
    # A browser that still holds a session and logs in (the login form of another tab).
    token = new_secret()
    alice.cookies.set(CSRF, token, domain="web.test")
    answer = await alice.post(
        "/login", data={"username": "bob", "password": PASSWORD, "csrf_token": token}
    )
    assert answer.status_code == 303
    assert alice.cookies[SESSION] != first
    assert len(site.world.revoked_sessions) == 1  # alice's
    page = await alice.get("/accounts")
    assert "Bob&#39;s" in page.text
    assert "Everyday" not in page.text


@pytest.mark.parametrize(
    ("sent", "passed_on"),
    [("203.0.113.7", "203.0.113.7"), ("2001:db8::1", "2001:db8::1"), ("not an address", None),
     (None, None)],
)  # fmt: skip
async def test_the_browsers_address_is_passed_on_to_the_gateway(
    site: Site, browser: httpx.AsyncClient, sent: str | None, passed_on: str | None
) -> None:
    # The gateway names the browser in X-Forwarded-For; auth's login throttling needs the
    # browser, not the web instance, as the client.
    headers = {"X-Forwarded-For": sent} if sent else {}
    form = await browser.get("/login")
    await browser.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_of(form.text)},
        headers=headers,
    )
    await browser.get("/accounts", headers=headers)
    assert [c.forwarded_for for c in site.world.calls] == [passed_on, passed_on]
