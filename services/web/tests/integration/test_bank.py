"""The bank's pages: accounts and statement (someone else's account is the 404 page), and
the transfer form: field errors next to the field (400, nothing sent), a missing or
forged CSRF token (403, nothing sent), and the three honest outcomes, with the form's
idempotency key making a double submission one transfer."""

from __future__ import annotations

import re

import httpx
import pytest

from services.web.tests.integration.conftest import Site, csrf_of, key_of, log_in, page_csrf

TRANSFERS = "/api/v1/transfers"


async def test_accounts_list_the_users_own_with_links(site: Site, alice: httpx.AsyncClient) -> None:
    page = await alice.get("/accounts")
    assert page.status_code == 200
    assert f'<a class="id" href="/accounts/{site.alice_eur}">' in page.text
    assert f'href="/accounts/{site.alice_savings}"' in page.text
    assert "100.00 EUR" in page.text
    assert "0.50 EUR" in page.text
    assert site.bob_eur not in page.text


async def test_an_account_shows_its_balance_and_statement_newest_first(
    site: Site, alice: httpx.AsyncClient
) -> None:
    for amount in ("1.00", "2.00"):
        form = await alice.get("/transfer")
        sent = await alice.post(
            "/transfer",
            data={
                "csrf_token": csrf_of(form.text), "idempotency_key": key_of(form.text),
                "from_account": site.alice_eur, "to_account": site.bob_eur, "amount": amount,
            },
        )  # fmt: skip
        assert sent.status_code == 200, sent.text
    page = await alice.get(f"/accounts/{site.alice_eur}")
    assert page.status_code == 200
    assert '<dd id="balance">97.00 EUR</dd>' in page.text
    assert page.text.index("-2.00 EUR") < page.text.index("-1.00 EUR")


@pytest.mark.parametrize("whose", ["bob", "nobody", "weird"])
async def test_someone_elses_account_is_the_404_page(
    site: Site, alice: httpx.AsyncClient, whose: str
) -> None:
    account_id = {"bob": site.bob_eur, "nobody": "acc_0_" + "0" * 32, "weird": "a%20b;c"}[whose]
    page = await alice.get(f"/accounts/{account_id}")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in page.text
    assert "Bob" not in page.text


async def _transfer(
    browser: httpx.AsyncClient, site: Site, **fields: str
) -> tuple[httpx.Response, dict[str, str]]:
    form = await browser.get("/transfer")
    data = {
        "csrf_token": csrf_of(form.text),
        "idempotency_key": key_of(form.text),
        "from_account": site.alice_eur,
        "to_account": site.bob_eur,
        "amount": "12.50",
        **fields,
    }
    return await browser.post("/transfer", data=data), data


async def test_a_transfer_is_completed_and_said_so(site: Site, alice: httpx.AsyncClient) -> None:
    answer, data = await _transfer(alice, site)
    assert answer.status_code == 200
    assert '<section id="transfer-result" data-status="201"' in answer.text
    assert "Transfer completed" in answer.text
    assert "12.50 EUR" in answer.text
    (call,) = site.world.calls_to("POST", TRANSFERS)
    assert call.idempotency_key == data["idempotency_key"]
    assert site.world.accounts[site.bob_eur].balance_minor == 2_500 + 1_250


async def test_the_same_form_sent_twice_is_one_transfer(
    site: Site, alice: httpx.AsyncClient
) -> None:
    first, data = await _transfer(alice, site)
    second = await alice.post("/transfer", data=data)  # a double click: the same key
    assert first.status_code == second.status_code == 200
    for answer in (first, second):
        assert 'data-status="201"' in answer.text
    assert len(site.world.calls_to("POST", TRANSFERS)) == 2
    assert site.world.accounts[site.alice_eur].balance_minor == 10_000 - 1_250  # moved once
    fresh = await alice.get("/transfer")
    assert key_of(fresh.text) != data["idempotency_key"]  # each rendering, its own key


async def test_an_accepted_transfer_says_it_is_finishing(
    site: Site, alice: httpx.AsyncClient
) -> None:
    site.world.transfer_answer = 202
    answer, _ = await _transfer(alice, site)
    assert '<section id="transfer-result" data-status="202"' in answer.text
    assert "Transfer accepted; it is finishing" in answer.text
    assert "committing" in answer.text
    transfer_id = next(iter(site.world.transfers.values()))[1]["id"]
    assert transfer_id in answer.text


@pytest.mark.parametrize(
    ("setup", "amount", "says"),
    [
        (None, "1000.00", "The account lacks the funds."),
        (503, "1.00", "A shard did not answer. Nothing moved; try again later."),
    ],
)
async def test_a_refused_transfer_says_why(
    site: Site, alice: httpx.AsyncClient, setup: int | None, amount: str, says: str
) -> None:
    site.world.transfer_answer = setup
    answer, _ = await _transfer(alice, site, amount=amount)
    assert answer.status_code == 422
    assert '<section id="transfer-result" data-status="refused"' in answer.text
    assert says in answer.text
    assert site.world.accounts[site.alice_eur].balance_minor == 10_000


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"amount": "abc"}, {"amount"}),
        ({"amount": "0"}, {"amount"}),
        ({"amount": "-5"}, {"amount"}),
        ({"amount": "1.234"}, {"amount"}),
        ({"amount": "1e5"}, {"amount"}),
        ({"amount": "99999999999999999999"}, {"amount"}),
        ({"amount": ""}, {"amount"}),
        ({"to_account": ""}, {"to_account"}),
        ({"to_account": "acc\x00x"}, {"to_account"}),
        ({"to_account": "x" * 300}, {"to_account"}),
        ({"from_account": "acc_0_not_mine"}, {"from_account"}),
        (
            {"from_account": "", "to_account": "", "amount": "x"},
            {"from_account", "to_account", "amount"},
        ),
    ],
)
async def test_bad_input_is_shown_next_to_its_field_and_sends_nothing(
    site: Site, alice: httpx.AsyncClient, fields: dict[str, str], errors: set[str]
) -> None:
    answer, data = await _transfer(alice, site, **fields)
    assert answer.status_code == 400, answer.text
    shown = set(re.findall(r'<p class="field-error" id="([a-z_]+)-error">', answer.text))
    assert shown == errors
    for name in errors:
        assert re.search(
            rf'<(input|select) id="{name}"[^>]*aria-describedby="{name}-error"', answer.text
        )
    assert site.world.calls_to("POST", TRANSFERS) == []
    assert (
        key_of(answer.text) == data["idempotency_key"]
    )  # the same form, corrected, is the same transfer


async def test_an_expired_form_key_is_refused(site: Site, alice: httpx.AsyncClient) -> None:
    answer, _ = await _transfer(alice, site, idempotency_key="not-a-uuid")
    assert answer.status_code == 400
    assert 'id="idempotency_key-error"' in answer.text
    assert site.world.calls_to("POST", TRANSFERS) == []


@pytest.mark.parametrize("token", [None, "", "forged", "x" * 43])
async def test_a_transfer_without_the_sessions_csrf_token_is_403_and_sends_nothing(
    site: Site, alice: httpx.AsyncClient, token: str | None
) -> None:
    form = await alice.get("/transfer")
    data = {
        "idempotency_key": key_of(form.text),
        "from_account": site.alice_eur,
        "to_account": site.bob_eur,
        "amount": "12.50",
    }
    if token is not None:
        data["csrf_token"] = token
    answer = await alice.post("/transfer", data=data)
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    assert "<h1>Forbidden: the form could not be trusted</h1>" in answer.text
    assert site.world.calls_to("POST", TRANSFERS) == []
    assert site.world.accounts[site.alice_eur].balance_minor == 10_000


async def test_another_sessions_csrf_token_is_refused(site: Site, alice: httpx.AsyncClient) -> None:
    async with site.browser() as bob:
        await log_in(bob, "bob")
        bobs_token = await page_csrf(bob)
    answer, _ = await _transfer(alice, site, csrf_token=bobs_token)
    assert answer.status_code == 403
    assert site.world.calls_to("POST", TRANSFERS) == []


async def test_a_body_that_is_no_form_is_a_400_page_not_a_500(
    site: Site, alice: httpx.AsyncClient
) -> None:
    csrf = await page_csrf(alice)
    multipart = await alice.post(
        "/transfer", data={"csrf_token": csrf}, files={"amount": ("a.txt", b"12")}
    )
    assert multipart.status_code == 400
    assert multipart.headers["content-type"].startswith("text/html")
    as_json = await alice.post("/transfer", json={"csrf_token": csrf})
    assert as_json.status_code == 403  # no form, no token
    assert site.world.calls_to("POST", TRANSFERS) == []
