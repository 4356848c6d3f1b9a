"""The main pages at 1440 px and 360 px wide (no sideways scrolling on a phone), every
field with its label, the login form with the keyboard alone, and each page's weight:
HTML + CSS + JS transferred with an empty cache, under 100 KB. The weights are written
to build/screenshots/page-weights.json beside the screenshots of both widths."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, Request

from tests.browser.harness import (
    MAIN_PAGE_BYTES,
    NARROW,
    SCREENSHOTS,
    WIDE,
    Api,
    Visitor,
    new_visitor,
)
from tests.e2e.system import RunningSystem

pytestmark = pytest.mark.e2e

CUSTOMER_PAGES = {
    "accounts": "/accounts",
    "account": "/accounts/{account}",
    "transfer": "/transfer",
    "shop": "/shop",
    "basket": "/basket",
    "orders": "/orders",
    "invoices": "/invoices",
}
OPERATOR_PAGES = {
    "console": "/console",
    "console-traces": "/console/traces",
    "console-pending": "/console/pending",
    "console-dead-letters": "/console/dead-letters",
    "console-audit": "/console/audit",
    "console-scaling": "/console/scaling",
}
_WEIGHED = ("document", "stylesheet", "script")  # not images, not the data a page fetches
_UNLABELLED = """() => Array.from(document.querySelectorAll(
    "input:not([type=hidden]), select, textarea")).filter(e => e.labels.length === 0)
    .map(e => e.outerHTML)"""


@dataclass
class Survey:
    weights: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def inspect(self, visitor: Visitor, name: str, path: str) -> None:
        """One page, loaded with an empty cache at 1440 px, then looked at at 360 px."""
        page = visitor.page
        visitor.at_width(WIDE)
        loaded: list[Request] = []

        def collect(request: Request) -> None:
            loaded.append(request)

        page.on("requestfinished", collect)
        try:
            visitor.open(path)
            page.wait_for_load_state("load")
        finally:
            page.remove_listener("requestfinished", collect)
        weight = 0
        for request in loaded:
            if request.resource_type in _WEIGHED:
                sizes = request.sizes()
                weight += sizes["responseHeadersSize"] + sizes["responseBodySize"]
        self.weights[name] = weight
        if weight >= MAIN_PAGE_BYTES:
            self.problems.append(f"{path}: {weight} bytes of HTML, CSS and JS")
        for unlabelled in page.evaluate(_UNLABELLED):
            self.problems.append(f"{path}: a field without a label: {unlabelled}")
        visitor.shoot(f"{name}-{WIDE}")
        visitor.at_width(NARROW)
        width = page.evaluate("document.scrollingElement.scrollWidth")
        if width > NARROW:
            self.problems.append(f"{path}: {width} px wide at {NARROW} px (scrolls sideways)")
        visitor.shoot(f"{name}-{NARROW}")
        visitor.at_width(WIDE)


def _no_cache(visitor: Visitor) -> None:
    """Every page load fetches its CSS and JS again, as a first visit does."""
    session = visitor.context.new_cdp_session(visitor.page)
    session.send("Network.enable")
    session.send("Network.setCacheDisabled", {"cacheDisabled": True})


def test_the_main_pages_fit_360_px_label_every_field_and_weigh_under_100_kb(
    visitor: Visitor, browser: Browser, system: RunningSystem, api: Api
) -> None:
    survey = Survey()
    _no_cache(visitor)
    survey.inspect(visitor, "login", "/login")
    visitor.login("alice")
    account = api.account("alice")["id"]
    for name, path in CUSTOMER_PAGES.items():
        survey.inspect(visitor, name, path.format(account=account))

    operator = new_visitor(browser, system)
    try:
        _no_cache(operator)
        operator.login("ada")
        for name, path in OPERATOR_PAGES.items():
            survey.inspect(operator, name, path)
    finally:
        operator.context.close()
    survey.problems.extend(operator.console.unexpected())

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "page-weights.json").write_text(json.dumps(survey.weights, indent=2) + "\n")
    print("page weights (bytes):", survey.weights)
    assert not survey.problems, "\n".join(survey.problems)


def test_the_login_form_works_with_the_keyboard_alone(visitor: Visitor) -> None:
    page = visitor.page
    visitor.open("/login")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#main", (
        "the first Tab stop is the skip link"
    )
    for _ in range(10):
        if page.evaluate("document.activeElement.id") == "username":
            break
        page.keyboard.press("Tab")
    else:
        pytest.fail("Tab never reaches the user name field")
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(visitor.system.password("alice"))
    page.keyboard.press("Enter")
    page.wait_for_url("**/accounts")
    assert visitor.heading() == "Accounts"
