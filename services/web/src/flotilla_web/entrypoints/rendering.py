"""Pages: Jinja2 templates (autoescaped, undefined names are errors) around one base
layout, with what every page shows (the navigation for the user's roles, the logout
form with its CSRF token)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from flotilla_web.domain import format_amount

if TYPE_CHECKING:
    from flotilla_web.entrypoints.sessions import WebSession

__all__ = ["TEMPLATES", "NavItem", "Pages", "render"]

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# The permission that shows the console in the navigation (support and admin hold it).
CONSOLE_PERMISSION = "system:read"


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    href: str
    current: bool


_CUSTOMER_NAV = (
    ("Accounts", "/accounts"),
    ("Transfer", "/transfer"),
    ("Shop", "/shop"),
    ("Basket", "/basket"),
    ("Orders", "/orders"),
    ("Invoices", "/invoices"),
)


def _when(value: object) -> str:
    """An API's ISO 8601 time as people read it: `2026-12-07 14:05 UTC`."""
    moment: dt.datetime
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        return "" if value is None else str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _amount(minor: Any, currency: Any) -> str:
    if not isinstance(minor, int) or isinstance(minor, bool):
        return "\u2014"
    return format_amount(minor, str(currency or ""))


class Pages:
    """The template environment of one app."""

    def __init__(self, directory: Path = TEMPLATES) -> None:
        self.environment = Environment(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(["html", "svg"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.environment.filters["amount"] = _amount
        self.environment.filters["when"] = _when

    def nav(self, session: WebSession | None, path: str) -> list[NavItem]:
        if session is None:
            return []
        items = list(_CUSTOMER_NAV)
        if session.can(CONSOLE_PERMISSION):
            items.append(("Console", "/console"))
        return [
            NavItem(label, href, path == href or path.startswith(href + "/"))
            for label, href in items
        ]

    def html(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        session: WebSession | None,
    ) -> str:
        return self.environment.get_template(template).render(
            {
                "session": session,
                "csrf_token": session.csrf_token if session is not None else "",
                "nav": self.nav(session, request.url.path),
                "path": request.url.path,
                **context,
            }
        )


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    session: WebSession | None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The page `template` (which extends `base.html`) as an HTML answer; never cached
    (pages hold the user's data). `session`: the logged-in user's (the navigation and the
    logout form), None on the login and error pages of nobody."""
    pages: Pages = request.app.state.pages
    body = pages.html(request, template, context or {}, session=session)
    return HTMLResponse(
        body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})}
    )
