"""What every page must be (the contract): its head, skip link, main, navigation and
logout form; labelled fields; nothing inline that the Content-Security-Policy would
block; under 100 KB. Static files with cache headers; errors as HTML pages (JSON for the
JSON endpoints), never a stack trace, never a 500 for bad input."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from flotilla_kit.devservers.ports import free_port
from flotilla_kit.testing import TokenMinter
from flotilla_web.bootstrap import build_app
from flotilla_web.domain import GatewayUnavailable
from flotilla_web.entrypoints.headers import CONTENT_SECURITY_POLICY
from flotilla_web.service_layer import bank
from services.web.tests.integration.conftest import Site, log_in

PAGES = ["/accounts", "/accounts/{alice_eur}", "/transfer", "/shop", "/basket", "/orders",
         "/invoices"]  # fmt: skip
LIMIT = 100 * 1024


class Page(HTMLParser):
    """The parts of a page the contract names."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.labels: set[str] = set()
        self.inline_scripts = 0
        self._in_script = False
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if tag == "label" and found.get("for"):
            self.labels.add(str(found["for"]))
        self._in_script = tag == "script" and "src" not in found
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1
        if self._in_title:
            self.title += data

    def having(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def check_contract(html: str, *, logged_in: bool) -> Page:
    page = parse(html)
    assert page.having("html", lang="en")
    assert page.title.strip()
    assert page.having("meta", name="viewport", content="width=device-width, initial-scale=1")
    assert page.having("link", rel="icon", href="/static/favicon.svg")
    assert page.having("a", href="#main")  # the skip link
    assert page.having("main", id="main")
    for tag, attrs in page.tags:
        assert "style" not in attrs, (tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert tag != "style"
    assert page.inline_scripts == 0
    for field in page.having("input") + page.having("select"):
        if field.get("type") != "hidden":
            assert field.get("id") in page.labels, field
    if logged_in:
        hrefs = {a.get("href") for a in page.having("a")}
        assert {"/accounts", "/transfer", "/shop", "/basket", "/orders", "/invoices"} <= hrefs
        (logout,) = page.having("form", action="/logout")
        assert logout.get("method") == "post"
        assert (
            'name="csrf_token"'
            in html.split('action="/logout"', 1)[1].split("</form>", maxsplit=1)[0]
        )
        assert ">Log out</button>" in html
    return page


async def test_every_page_keeps_the_contract_and_weighs_under_100_kb(
    site: Site, alice: httpx.AsyncClient
) -> None:
    statics = 0
    for name in ("app.css", "app.js", "favicon.svg"):
        statics += len((await alice.get(f"/static/{name}")).content)
    weights = {}
    for path in PAGES:
        page = await alice.get(path.format(alice_eur=site.alice_eur))
        assert page.status_code == 200, path
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        check_contract(page.text, logged_in=True)
        weights[path] = len(page.content) + statics
        assert weights[path] < LIMIT, weights
    print("page weights (HTML + CSS + JS + icon, bytes):", weights)


async def test_the_login_and_error_pages_keep_the_contract(
    site: Site, browser: httpx.AsyncClient
) -> None:
    login = await browser.get("/login")
    check_contract(login.text, logged_in=False)
    missing = await browser.get("/no/such/page")
    assert missing.status_code == 404
    assert "<h1>Not found</h1>" in missing.text
    check_contract(missing.text, logged_in=False)
    await log_in(browser)
    missing = await browser.get("/no/such/page")
    check_contract(missing.text, logged_in=False)


async def test_a_logged_in_users_error_page_keeps_the_navigation(
    site: Site, alice: httpx.AsyncClient
) -> None:
    page = await alice.get(f"/accounts/{site.bob_eur}")
    assert page.status_code == 404
    check_contract(page.text, logged_in=True)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nothing-here", 404),
        ("DELETE", "/accounts", 405),
        ("GET", "/static/../settings.py", 404),
        ("GET", "/static/nope.css", 404),
        ("GET", "/accounts/" + "x" * 5000, 404),
        ("GET", "/orders/%E2%80%AE", 400),  # refused text: the chassis's rule, as a page
        ("GET", "/accounts?after=%00", 400),
        ("POST", "/accounts", 405),
    ],
)
async def test_errors_are_pages_never_a_stack_trace(
    site: Site, alice: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    answer = await alice.request(method, path)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert re.search(r"<h1>[^<]+</h1>", answer.text)
    assert "Traceback" not in answer.text


async def test_a_body_over_the_limit_is_a_413_page(site: Site, alice: httpx.AsyncClient) -> None:
    answer = await alice.post("/transfer", data={"amount": "1" * 2_000_000})
    assert answer.status_code == 413
    assert "<h1>Request too large</h1>" in answer.text
    assert answer.headers["x-request-id"]
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_a_json_endpoint_keeps_its_problems(site: Site, alice: httpx.AsyncClient) -> None:
    answer = await alice.get("/orders/%E2%80%AE/status")
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_an_unexpected_error_is_the_500_page(
    site: Site, alice: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug, with a secret in its message: hunter2")

    monkeypatch.setattr(bank, "my_accounts", broken)
    answer = await alice.get("/accounts")
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "<h1>Something went wrong</h1>" in answer.text
    assert "hunter2" not in answer.text
    assert "Traceback" not in answer.text


async def test_a_gateway_that_does_not_answer_is_the_503_page(
    site: Site, alice: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def silent(*args: object, **kwargs: object) -> None:
        raise GatewayUnavailable("GET /api/v1/accounts: ConnectTimeout")

    monkeypatch.setattr(bank, "my_accounts", silent)
    answer = await alice.get("/accounts")
    assert answer.status_code == 503
    assert "<h1>Service unavailable</h1>" in answer.text


async def test_logging_in_while_the_gateway_is_down_says_so(
    site: Site, tokens: TokenMinter, tmp_path: Path
) -> None:
    settings = site.settings.model_copy(
        update={"gateway_url": f"https://127.0.0.1:{free_port()}", "var_dir": tmp_path / "down"}
    )
    app = build_app(settings, verifier=tokens.verifier(), sweep_sessions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://web.test"
        ) as browser,
    ):
        answer = await log_in(browser)
    assert answer.status_code == 503
    assert 'id="login-error"' in answer.text
    assert "not possible right now" in answer.text


async def test_static_files_are_cached_and_revalidated(
    site: Site, browser: httpx.AsyncClient
) -> None:
    for name, media_type in (
        ("app.css", "text/css"),
        ("app.js", "text/javascript"),
        ("favicon.svg", "image/svg+xml"),
    ):
        answer = await browser.get(f"/static/{name}")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(media_type)
        assert answer.headers["cache-control"] == "public, max-age=3600"
        again = await browser.get(
            f"/static/{name}", headers={"If-None-Match": answer.headers["etag"]}
        )
        assert again.status_code == 304
        assert again.content == b""
    css = (await browser.get("/static/app.css")).text
    assert "@media (min-width: 48rem)" in css  # the wide layout; the narrow one is the base
