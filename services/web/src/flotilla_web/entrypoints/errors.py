"""Errors as pages: 400, 401, 403, 404 (and 5xx) are HTML pages from `error.html`, with
an `<h1>` naming the problem and never a stack trace; a JSON endpoint (a path ending in
`.json` or `/status`, or a request that accepts JSON and not HTML) gets the same as an
RFC 9457 problem. NotLoggedIn also clears the session cookie and deletes its row; a GET
goes to the login page instead."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flotilla_kit.logs import get_logger
from flotilla_kit.problems import GENERIC_PROBLEMS, Problem
from flotilla_web.domain import (
    ApiFailed,
    CsrfRefused,
    Forbidden,
    GatewayUnavailable,
    InvalidForm,
    NotFound,
    NotLoggedIn,
    WebError,
    safe_next,
)
from flotilla_web.entrypoints.rendering import render
from flotilla_web.entrypoints.sessions import WebSession, Wiring

__all__ = [
    "ChassisProblemsAsPages",
    "UnexpectedErrorPage",
    "error_page",
    "install_error_pages",
    "login_url",
    "wants_json",
]

_log = get_logger("flotilla.web.errors")

# (status, problem slug, the page's heading, what it says)
_PAGES: dict[type, tuple[int, str, str, str]] = {
    NotLoggedIn: (
        401,
        "unauthenticated",
        "Please log in",
        "Your session is over or was never started. Log in to go on.",
    ),
    CsrfRefused: (
        403,
        "csrf-refused",
        "Forbidden: the form could not be trusted",
        "The form's security token was missing or wrong, so nothing was done. Go back, "
        "reload the page and send it again.",
    ),
    Forbidden: (403, "forbidden", "Forbidden", "Your account may not open this page."),
    NotFound: (
        404,
        "not-found",
        "Not found",
        "There is nothing here that your account may see.",
    ),
    InvalidForm: (400, "bad-request", "Bad request", "The form has errors."),
    GatewayUnavailable: (
        503,
        "unavailable",
        "Service unavailable",
        "A service did not answer in time. Nothing was lost; try again in a moment.",
    ),
    ApiFailed: (
        502,
        "bad-gateway",
        "Something went wrong",
        "A service answered in a way this page cannot explain. It was logged.",
    ),
}


def wants_json(request: Request) -> bool:
    path = request.url.path
    if path.endswith((".json", "/status")):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def login_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = safe_next(here)
    return "/login" if target in (None, "/") else f"/login?next={quote(target, safe='/')}"


def _session_of(request: Request) -> WebSession | None:
    found = getattr(request.state, "web_session", None)
    return found if isinstance(found, WebSession) else None


def error_page(
    request: Request,
    status: int,
    heading: str,
    detail: str,
    *,
    slug: str = "error",
    session: WebSession | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    if wants_json(request):
        extensions = {"errors": errors} if errors else {}
        return Problem(status, slug, heading, detail, **extensions).to_response(
            instance=request.url.path
        )
    return render(
        request,
        "error.html",
        {
            "title": heading,
            "heading": heading,
            "detail": detail,
            "status": status,
            "errors": errors or {},
        },
        session=session if session is not None else _session_of(request),
        status=status,
    )


async def _on_web_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WebError)
    if isinstance(exc, NotLoggedIn):
        return await _not_logged_in(request)
    status, slug, heading, detail = next(
        _PAGES[kind] for kind in type(exc).__mro__ if kind in _PAGES
    )
    errors: dict[str, str] | None = None
    if isinstance(exc, ApiFailed):
        _log.error("an API answered what the page cannot use", status=exc.status, detail=exc.detail)
        status = 503 if exc.status == 503 else 502
    elif isinstance(exc, InvalidForm):
        errors = exc.errors
    elif isinstance(exc, Forbidden):
        detail = f"Your account may not open this page (it needs {exc.permission!r})."
    # The error page of a logged-in user still has their navigation.
    return error_page(request, status, heading, detail, slug=slug, errors=errors)


async def _not_logged_in(request: Request) -> Response:
    wiring: Wiring = request.app.state.wiring
    cookie = request.cookies.get(wiring.cookies.session)
    if cookie is not None:
        await wiring.keeper.forget(cookie)
    if request.method in ("GET", "HEAD") and not wants_json(request):
        response: Response = RedirectResponse(login_url(request), status_code=303)
    else:
        status, slug, heading, detail = _PAGES[NotLoggedIn]
        request.state.web_session = None
        response = error_page(request, status, heading, detail, slug=slug)
    if cookie is not None:
        wiring.cookies.clear(response.headers, wiring.cookies.session)
    return response


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    slug, title = GENERIC_PROBLEMS.get(exc.status_code, ("http-error", "HTTP error"))
    details = {
        404: "There is no page at this address.",
        405: "This page does not take that method.",
    }
    detail = details.get(exc.status_code, title)
    response = error_page(request, exc.status_code, title, detail, slug=slug)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _on_validation(request: Request, exc: Exception) -> Response:
    return error_page(
        request,
        400,
        "Bad request",
        "The address or the form is not what this page takes.",
        slug="bad-request",
    )


class UnexpectedErrorPage:
    """ASGI middleware, innermost (between the routes and the chassis's middleware, which
    would answer a JSON problem): an exception no handler took becomes the 500 page. The
    traceback goes to the log (with the request id), never to the browser."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:
                raise
            request = Request(scope, receive)
            _log.error("unhandled exception", exc_info=exc, path=request.url.path)
            response = error_page(
                request,
                500,
                "Something went wrong",
                "The error was logged. Try again later.",
                slug="internal-error",
            )
            await response(scope, receive, send)


_PAGE_FOR_PROBLEM = {
    413: ("Request too large", "The form sent was larger than any page takes."),
    422: ("Bad request", "The address holds characters no page takes."),
}


class ChassisProblemsAsPages:
    """ASGI middleware, outside the chassis's: the chassis answers a body over the limit
    (413) and a path or query holding refused characters (422) itself, as problem+json,
    before any route runs; for a page URL the browser gets the HTML page instead (the
    request id header kept, the chassis's metrics and access log untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if wants_json(request):
            await self.app(scope, receive, send)
            return
        replaced: list[tuple[bytes, bytes]] | None = None
        status = 0

        async def sending(message: Message) -> None:
            nonlocal replaced, status
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                problem = any(
                    k == b"content-type" and v.startswith(b"application/problem+json")
                    for k, v in headers
                )
                if message["status"] in _PAGE_FOR_PROBLEM and problem:
                    status = message["status"]
                    replaced = [(k, v) for k, v in headers if k == b"x-request-id"]
                    return
            elif replaced is not None:
                return  # the problem's body: the page replaces it
            await send(message)

        await self.app(scope, receive, sending)
        if replaced is not None:
            heading, detail = _PAGE_FOR_PROBLEM[status]
            page = error_page(request, 400 if status == 422 else status, heading, detail)
            for name, value in replaced:
                page.headers[name.decode()] = value.decode()
            await page(scope, receive, send)


def install_error_pages(app: FastAPI) -> None:
    """Replace the chassis's problem handlers (JSON) with pages, for the page URLs."""
    app.add_exception_handler(WebError, _on_web_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation)
    # Appended: the innermost middleware (`add_middleware` would make it the outermost).
    app.user_middleware.append(Middleware(UnexpectedErrorPage))
    app.add_middleware(ChassisProblemsAsPages)
