"""What the browser tests drive and check: a visitor (one browser context: a page, its
console, its cookies) and the API (the server's state, read with the demo users' tokens)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Response,
    expect,
)

from tests.e2e.system import RunningSystem

__all__ = [
    "HEIGHT",
    "MAIN_PAGE_BYTES",
    "NARROW",
    "SCREENSHOTS",
    "SESSION_COOKIE",
    "SESSION_IDLE_S",
    "SYSTEM_ENV",
    "WIDE",
    "Api",
    "ConsoleWatch",
    "IdleSession",
    "Visitor",
    "money",
    "new_visitor",
    "wait_until",
]

ROOT = Path(__file__).resolve().parents[2]
# Written by every run (build/ is ignored by git); the README shows two of them.
SCREENSHOTS = ROOT / "build" / "screenshots"
SESSION_COOKIE = "__Host-flotilla_session"
MAIN_PAGE_BYTES = 100_000  # HTML + CSS + JS of one page, transferred (issue 18)
WIDE, NARROW = 1440, 360
HEIGHT = 900
# A session unused this long is over; its last use is written on every request (touch 0),
# so the timeout is exact. Long enough for the slowest step of a test (a scale request).
SESSION_IDLE_S = 20.0
SYSTEM_ENV = {
    "FLOTILLA_SESSION_IDLE_TIMEOUT_S": str(SESSION_IDLE_S),
    "FLOTILLA_SESSION_TOUCH_S": "0",
}
FINAL_WITHIN_S = 30.0  # a transfer or an order that is not final by then is stuck
_LOADED_WITH_STATUS = re.compile(r"the server responded with a status of (\d{3})")


def wait_until(what: str, check: Callable[[], bool], within_s: float = FINAL_WITHIN_S) -> None:
    """Polls another process's state (there is no event to await) until `check()`."""
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
        time.sleep(0.1)


def money(minor: int, currency: str = "EUR") -> str:
    """As the pages write an amount: 1234550 -> "12,345.50 EUR"."""
    units, cents = divmod(abs(minor), 100)
    return f"{'-' if minor < 0 else ''}{units:,}.{cents:02d} {currency}"


@dataclass
class ConsoleWatch:
    """Every console error and uncaught exception of a page. A page that answers 4xx makes
    Chromium log "Failed to load resource: ... status of 403": a test that asks for such
    a page says so (`allow`); anything else fails the test."""

    messages: list[str] = field(default_factory=list)
    allowed_statuses: set[int] = field(default_factory=set)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", self._page_error)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.messages.append(f"console error: {message.text} at {message.location}")

    def _page_error(self, error: Error) -> None:
        self.messages.append(f"page error: {error.name}: {error.message}")

    def unexpected(self) -> list[str]:
        def allowed(message: str) -> bool:
            status = _LOADED_WITH_STATUS.search(message)
            return status is not None and int(status.group(1)) in self.allowed_statuses

        return [m for m in self.messages if not allowed(m)]


@dataclass
class Visitor:
    """One person at one browser: a context of their own (cookies, cache), one page."""

    system: RunningSystem
    context: BrowserContext
    page: Page
    console: ConsoleWatch

    def allow(self, *statuses: int) -> None:
        """This test asks for pages answered with these statuses (the 403 page, ...)."""
        self.console.allowed_statuses.update(statuses)

    def open(self, path: str, status: int = 200) -> Response:
        response = self.page.goto(path)
        assert response is not None, path
        assert response.status == status, f"{path}: {response.status} {self.page.url}"
        return response

    def path(self) -> str:
        """The page's path and query, as the address bar shows them."""
        url = httpx.URL(self.page.url)
        return url.raw_path.decode()

    def login(self, username: str, next_path: str | None = None) -> None:
        """Through the login form, as a person does; ends on the page it leads to."""
        self.open("/login" if next_path is None else f"/login?next={next_path}")
        self.page.get_by_label("User name").fill(username)
        self.page.get_by_label("Password").fill(self.system.password(username))
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(lambda url: "/login" not in url)

    def heading(self) -> str:
        return self.page.locator("main h1").inner_text()

    def shoot(self, name: str) -> None:
        """build/screenshots/<name>.png, the whole page as it is now."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

    def at_width(self, width: int) -> None:
        self.page.set_viewport_size({"width": width, "height": HEIGHT})

    def cookie(self, name: str) -> str | None:
        return next((c["value"] for c in self.context.cookies() if c["name"] == name), None)

    def expect_login_page(self, next_path: str) -> None:
        """Sent to the login form, which brings the user back to `next_path` afterwards."""
        self.page.wait_for_url(re.compile(r"/login(\?|$)"))
        assert httpx.URL(self.page.url).params.get("next") == next_path, self.page.url
        expect(self.page.get_by_label("User name")).to_be_visible()
        assert self.cookie(SESSION_COOKIE) is None, "the session cookie was not cleared"


class Api:
    """The system's API as its demo users see it: what the server holds, to check what
    a page says against it (and to set up products)."""

    def __init__(self, system: RunningSystem, client: httpx.Client) -> None:
        self.system = system
        self.client = client
        self._tokens: dict[str, str] = {}

    def headers(self, user: str) -> dict[str, str]:
        if user not in self._tokens:
            self._tokens[user] = self.system.token(user)
        return {"Authorization": f"Bearer {self._tokens[user]}"}

    def get(self, user: str, path: str, **params: Any) -> Any:
        response = self.client.get(path, headers=self.headers(user), params=params)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()

    def accounts(self, user: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(user, "/api/v1/accounts")["items"]
        return items

    def account(self, user: str, currency: str = "EUR") -> dict[str, Any]:
        """The user's first account in `currency`."""
        return next(a for a in self.accounts(user) if a["currency"] == currency)

    def balance(self, user: str, account_id: str) -> int:
        balance: int = self.get(user, f"/api/v1/accounts/{account_id}")["balance_minor"]
        return balance

    def transfers(self, user: str) -> list[dict[str, Any]]:
        """The user's newest transfers, newest first."""
        items: list[dict[str, Any]] = self.get(user, "/api/v1/transfers", limit=100)["items"]
        return items

    def order(self, user: str, order_id: str) -> dict[str, Any]:
        order: dict[str, Any] = self.get(user, f"/api/v1/orders/{order_id}")
        return order

    def product(self, product_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/products/{product_id}")
        assert response.status_code == 200, response.text
        product: dict[str, Any] = response.json()
        return product

    def new_product(self, name: str, price_minor: int, on_hand: int) -> str:
        """A product of this test's own (the admin adds it), so its stock is known."""
        sku = f"WEB-{uuid.uuid4().hex[:10].upper()}"
        response = self.client.post(
            "/api/v1/products",
            headers={**self.headers("ada"), "Idempotency-Key": str(uuid.uuid4())},
            json={"sku": sku, "name": name, "price_minor": price_minor, "currency": "EUR",
                  "on_hand": on_hand},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        product_id: str = response.json()["id"]
        return product_id


class IdleSession:
    """A customer logged in, then left alone: no page of the site open, nothing sent."""

    def __init__(self, visitor: Visitor) -> None:
        self.visitor = visitor
        visitor.login("carol")
        self.last_used = time.monotonic()  # after the server's last write of it
        visitor.page.goto("about:blank")


def new_visitor(browser: Browser, system: RunningSystem) -> Visitor:
    """A fresh browser context (no cookies, empty cache) and its page, its console watched."""
    context = browser.new_context(
        base_url=system.gateway_url, viewport={"width": WIDE, "height": HEIGHT}
    )
    page = context.new_page()
    console = ConsoleWatch()
    console.attach(page)
    return Visitor(system, context, page, console)
