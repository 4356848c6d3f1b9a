"""A session's life: a cookie that names no session (unknown, tampered, of a session that
is over) sends the browser to the login page and is cleared; the access token is renewed
by rotation when it is about to expire, once however many requests arrive together; a
refused refresh ends the session; a token the gateway refuses ends it too."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select

from flotilla_kit.db import Database, Query
from flotilla_web.adapters import lookup_key
from flotilla_web.adapters.tables import sessions
from services.web.tests.integration.conftest import SESSION, Site, either_database, page_csrf
from services.web.tests.integration.gateway import access_claims

# The session store on both databases (the pages elsewhere run on SQLite only).
database_url = pytest.fixture(params=["sqlite", "postgres"])(either_database)


def _cleared(answer: httpx.Response) -> bool:
    return any(
        v.startswith(f"{SESSION}=") and "Max-Age=0" in v
        for v in answer.headers.get_list("set-cookie")
    )


async def _row_exists(site: Site, cookie: str) -> bool:
    async with site.wiring.uow(write=False) as u:
        return await u.sessions.get(cookie) is not None


def _tampered(cookie: str) -> str:
    return ("A" if cookie[0] != "A" else "B") + cookie[1:]


@pytest.mark.parametrize(
    "cookie",
    [
        "unknown-but-well-formed-0123456789abcdefghijk",  # 43 characters, no such session
        "short",
        "x" * 4000,
        "../../etc/passwd",
    ],
)
async def test_an_unknown_cookie_goes_to_login_and_is_cleared(
    site: Site, browser: httpx.AsyncClient, cookie: str
) -> None:
    browser.cookies.set(SESSION, cookie, domain="web.test")
    answer = await browser.get("/accounts")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/accounts"
    assert _cleared(answer)
    assert site.world.calls == []


async def test_a_tampered_cookie_is_refused_for_get_post_and_json(
    site: Site, alice: httpx.AsyncClient
) -> None:
    good = alice.cookies[SESSION]
    csrf = await page_csrf(alice)
    calls = len(site.world.calls)
    alice.cookies.set(SESSION, _tampered(good), domain="web.test")
    get = await alice.get("/accounts")
    assert (get.status_code, get.headers["location"]) == (303, "/login?next=/accounts")
    assert _cleared(get)

    alice.cookies.set(SESSION, _tampered(good), domain="web.test")
    post = await alice.post("/transfer", data={"csrf_token": csrf, "amount": "1"})
    assert post.status_code == 401
    assert "<h1>Please log in</h1>" in post.text
    assert _cleared(post)

    alice.cookies.set(SESSION, _tampered(good), domain="web.test")
    status = await alice.get("/orders/some-order/status")
    assert status.status_code == 401
    assert status.headers["content-type"].startswith("application/problem+json")
    assert len(site.world.calls) == calls  # nothing reached an API
    assert await _row_exists(site, good)  # the real session is untouched


async def test_an_idle_session_is_over(site: Site, alice: httpx.AsyncClient) -> None:
    cookie = alice.cookies[SESSION]
    site.clock.advance(site.settings.session_idle_timeout_s - 1)
    assert (await alice.get("/accounts")).status_code == 200  # used: it lives on
    site.clock.advance(site.settings.session_idle_timeout_s - 1)
    assert (await alice.get("/accounts")).status_code == 200
    site.clock.advance(site.settings.session_idle_timeout_s)
    answer = await alice.get("/accounts")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/accounts"
    assert _cleared(answer)
    assert not await _row_exists(site, cookie)
    # Its refresh token was revoked at the auth service on the way out.
    assert len(site.world.calls_to("POST", "/api/v1/auth/logout")) == 1


async def test_a_session_ends_at_its_absolute_timeout_however_used(
    site: Site, alice: httpx.AsyncClient
) -> None:
    step = site.settings.session_idle_timeout_s / 2
    used = 0.0
    while used + step < site.settings.session_absolute_timeout_s:
        site.clock.advance(step)
        used += step
        assert (await alice.get("/orders")).status_code == 200, used
    site.clock.advance(step)
    assert (await alice.get("/orders")).status_code == 303


async def test_the_access_token_is_renewed_by_rotation_near_its_expiry(
    site: Site, alice: httpx.AsyncClient
) -> None:
    first_access, first_refresh = site.world.issued_tokens
    await alice.get("/accounts")
    assert site.world.calls_to("POST", "/api/v1/auth/token")[1:] == []  # only the login
    ttl = site.world.access_ttl_s
    site.clock.advance(ttl - site.settings.refresh_before_s - 5)  # 65 s left: not yet
    await alice.get("/accounts")
    assert len(site.world.calls_to("POST", "/api/v1/auth/token")) == 1
    site.clock.advance(10)  # 55 s left: renewed before the page calls anything
    page = await alice.get("/accounts")
    assert page.status_code == 200
    assert len(site.world.calls_to("POST", "/api/v1/auth/token")) == 2
    assert first_refresh in site.world.spent  # rotated: the old refresh token is spent
    new_access = site.world.issued_tokens[2]
    assert site.world.calls[-1].token == new_access
    assert access_claims(new_access)["sid"] == access_claims(first_access)["sid"]


async def test_requests_arriving_together_renew_the_token_once(
    site: Site, alice: httpx.AsyncClient
) -> None:
    # Hold the refresh until every request is waiting: a second refresh with the same
    # refresh token would be a reuse, which revokes the whole session at the auth service.
    site.world.refresh_gate = gate = asyncio.Event()
    site.clock.advance(site.world.access_ttl_s)  # expired: nobody may go on with the old one
    pages = [asyncio.create_task(alice.get(p)) for p in ("/accounts", "/orders", "/shop") * 2]
    # One refresh reached auth; the others wait behind it.
    await asyncio.wait_for(site.world.refreshing.wait(), 10)
    gate.set()
    answers = await asyncio.gather(*pages)
    assert [a.status_code for a in answers] == [200] * 6
    assert len(site.world.calls_to("POST", "/api/v1/auth/token")) == 2  # login + one refresh
    assert site.world.revoked_sessions == set()


async def test_a_refused_refresh_ends_the_session(site: Site, alice: httpx.AsyncClient) -> None:
    cookie = alice.cookies[SESSION]
    site.world.revoked_sessions.add(access_claims(site.world.issued_tokens[0])["sid"])
    site.clock.advance(site.world.access_ttl_s)
    answer = await alice.get("/accounts")
    assert (answer.status_code, answer.headers["location"]) == (303, "/login?next=/accounts")
    assert not await _row_exists(site, cookie)


async def test_a_token_the_gateway_refuses_ends_the_session(
    site: Site, alice: httpx.AsyncClient
) -> None:
    cookie = alice.cookies[SESSION]
    # Revoked at the auth service (an administrator locked the user): the next API call
    # is a 401.
    site.world.revoked_sessions.add(access_claims(site.world.issued_tokens[0])["sid"])
    answer = await alice.get("/accounts")
    assert (answer.status_code, answer.headers["location"]) == (303, "/login?next=/accounts")
    assert _cleared(answer)
    assert not await _row_exists(site, cookie)


async def test_the_store_keeps_neither_the_cookie_nor_the_tokens(
    site: Site, alice: httpx.AsyncClient
) -> None:
    cookie = alice.cookies[SESSION]
    access, refresh = site.world.issued_tokens
    database = Database(site.settings.sqlalchemy_url)
    try:
        async with database.transaction(write=False) as tx:
            rows = await tx.all(Query(select(sessions)))
    finally:
        await database.dispose()
    (row,) = rows
    dumped = repr(tuple(row))
    assert row.id_hash == lookup_key(cookie)
    for secret in (cookie, access, refresh):
        assert secret not in dumped


async def test_sweeping_deletes_the_sessions_that_are_over(
    site: Site, alice: httpx.AsyncClient
) -> None:
    assert await site.wiring.keeper.sweep() == 0
    site.clock.advance(site.settings.session_idle_timeout_s)
    assert await site.wiring.keeper.sweep() == 1
    assert (await alice.get("/accounts")).status_code == 303
