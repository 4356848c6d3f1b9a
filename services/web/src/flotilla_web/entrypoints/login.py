"""The start page, logging in and out.

The login form has no session to hold its CSRF token, so it uses a double submit: the
token is both in a cookie (`__Host-flotilla_csrf`, which only this site can set) and in
the form, and a POST must carry the same in both."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from flotilla_kit.text import refusal
from flotilla_web.domain import (
    CsrfRefused,
    GatewayUnavailable,
    NotLoggedIn,
    new_secret,
    safe_next,
    same_secret,
    valid_secret,
)
from flotilla_web.domain.errors import ApiFailed
from flotilla_web.entrypoints.rendering import CONSOLE_PERMISSION, render
from flotilla_web.entrypoints.sessions import CheckedForm, CurrentSession, Wired, field, read_form
from flotilla_web.service_layer.ports import LoginRefused, TooManyAttempts

__all__ = ["router"]

router = APIRouter()

MAX_USERNAME = 200
MAX_PASSWORD = 1024


def _home(can_console: bool) -> str:
    return "/console" if can_console else "/accounts"


@router.get("/", include_in_schema=False)
async def start(request: Request, wiring: Wired) -> Response:
    try:
        session = await wiring.keeper.current(request.cookies.get(wiring.cookies.session))
    except NotLoggedIn:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(_home(session.can(CONSOLE_PERMISSION)), status_code=303)


def _login_page(
    request: Request,
    wiring: Wired,
    *,
    status: int = 200,
    next_path: str = "",
    username: str = "",
    errors: dict[str, str] | None = None,
    alert: str = "",
) -> HTMLResponse:
    token = request.cookies.get(wiring.cookies.csrf)
    if not valid_secret(token):
        token = new_secret()
    response = render(
        request,
        "login.html",
        {
            "title": "Log in",
            "login_csrf": token,
            "next": next_path,
            "username": username,
            "errors": errors or {},
            "alert": alert,
        },
        session=None,
        status=status,
    )
    assert token is not None
    wiring.cookies.set(response.headers, wiring.cookies.csrf, token)
    return response


@router.get("/login", include_in_schema=False)
async def login_form(request: Request, wiring: Wired) -> Response:
    next_path = safe_next(request.query_params.get("next")) or ""
    try:
        session = await wiring.keeper.current(request.cookies.get(wiring.cookies.session))
    except NotLoggedIn:
        return _login_page(request, wiring, next_path=next_path)
    return RedirectResponse(next_path or _home(session.can(CONSOLE_PERMISSION)), status_code=303)


@router.post("/login", include_in_schema=False)
async def log_in(request: Request, wiring: Wired) -> Response:
    form = await read_form(request)
    cookie = request.cookies.get(wiring.cookies.csrf)
    if not valid_secret(cookie) or not same_secret(str(cookie), field(form, "csrf_token")):
        raise CsrfRefused
    username, password = field(form, "username").strip(), field(form, "password")
    next_path = safe_next(field(form, "next")) or ""
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = "Enter your user name."
    elif len(username) > MAX_USERNAME or refusal(username) is not None:
        errors["username"] = "That is not a user name."
    if not password:
        errors["password"] = "Enter your password."  # noqa: S105 - a message
    elif len(password) > MAX_PASSWORD or refusal(password, single_line=False) is not None:
        errors["password"] = "That is not a password."  # noqa: S105 - a message
    if errors:
        return _login_page(
            request, wiring, status=400, next_path=next_path, username=username, errors=errors
        )

    def again(status: int, alert: str) -> HTMLResponse:
        return _login_page(
            request, wiring, status=status, next_path=next_path, username=username, alert=alert
        )

    try:
        session_id, session = await wiring.keeper.log_in(username=username, password=password)
    except LoginRefused:
        return again(401, "Wrong user name or password.")
    except TooManyAttempts as error:
        wait = f" in {error.retry_after_s} seconds" if error.retry_after_s else " later"
        return again(429, f"Too many failed logins from here. Try again{wait}.")
    except (GatewayUnavailable, ApiFailed):
        return again(503, "Logging in is not possible right now. Try again in a moment.")
    # A session the browser had before (another user's, or an old one) ends here.
    previous = request.cookies.get(wiring.cookies.session)
    if previous is not None:
        await wiring.keeper.log_out(previous)
    response = RedirectResponse(
        next_path or _home(session.can(CONSOLE_PERMISSION)), status_code=303
    )
    wiring.cookies.set(response.headers, wiring.cookies.session, session_id)
    wiring.cookies.clear(response.headers, wiring.cookies.csrf)
    return response


@router.post("/logout", include_in_schema=False)
async def log_out(web: CurrentSession, form: CheckedForm, wiring: Wired) -> Response:
    await wiring.keeper.log_out(web.id)
    response = RedirectResponse("/login", status_code=303)
    wiring.cookies.clear(response.headers, wiring.cookies.session)
    return response
