"""What a page handler is given: the wiring, the current session (with a client of the
APIs bound to the user's token), the permission checks and the CSRF-checked form.

    @router.get("/console")
    async def console(request: Request, web: CurrentSession) -> HTMLResponse:
        web.require("system:read")                    # else the 403 page
        answer = await web.api.get("/api/v1/system/instances")
        return render(request, "console/system.html", {...}, session=web)

    @router.post("/console/scale")
    async def scale(request: Request, web: CurrentSession, form: CheckedForm) -> Response:
        ...                                            # form["service"], ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from flotilla_web.domain import CsrfRefused, Forbidden, InvalidForm, Session, same_secret
from flotilla_web.entrypoints.cookies import Cookies
from flotilla_web.service_layer.ports import UnitOfWorkFactory, UserApi
from flotilla_web.service_layer.sessions import SessionKeeper
from flotilla_web.settings import WebSettings

__all__ = [
    "MAX_FIELDS",
    "CheckedForm",
    "CurrentSession",
    "WebSession",
    "Wired",
    "Wiring",
    "current_session",
    "field",
    "read_form",
    "require_permission",
]

# A page's form has a handful of fields; more is not a form of ours.
MAX_FIELDS = 20


@dataclass(frozen=True, slots=True)
class Wiring:
    """What the pages use, set by bootstrap.py on `app.state.wiring`."""

    settings: WebSettings
    keeper: SessionKeeper
    uow: UnitOfWorkFactory
    # The APIs behind the gateway, as the user whose access token is given.
    user_api: Callable[[str], UserApi]
    cookies: Cookies


async def _wiring(request: Request) -> Wiring:
    wiring: Wiring = request.app.state.wiring
    return wiring


Wired = Annotated[Wiring, Depends(_wiring)]


@dataclass(frozen=True, slots=True)
class WebSession:
    """The logged-in user of a request. `api` calls the gateway with their access token
    (which nothing else here shows); `id` is the cookie's value (never render it)."""

    id: str
    session: Session
    api: UserApi

    @property
    def user_id(self) -> str:
        return self.session.user_id

    @property
    def username(self) -> str:
        return self.session.username

    @property
    def roles(self) -> frozenset[str]:
        return self.session.roles

    @property
    def permissions(self) -> frozenset[str]:
        return self.session.permissions

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    def can(self, permission: str) -> bool:
        return self.session.can(permission)

    def require(self, permission: str) -> None:
        """Forbidden (the 403 page, or a 403 problem on a JSON endpoint) unless the user's
        roles grant `permission`."""
        if not self.can(permission):
            raise Forbidden(permission)


async def current_session(request: Request, wiring: Wired) -> WebSession:
    """The session of the request's cookie; NotLoggedIn otherwise, which sends a GET to
    the login page (303, `next` = this page), answers a POST with the 401 page and a JSON
    endpoint with a 401 problem, and clears the cookie."""
    session_id = request.cookies.get(wiring.cookies.session)
    session = await wiring.keeper.current(session_id)
    assert session_id is not None
    web = WebSession(session_id, session, wiring.user_api(session.tokens.access_token))
    request.state.web_session = web  # for the error pages' navigation
    return web


CurrentSession = Annotated[WebSession, Depends(current_session)]


def require_permission(permission: str) -> Callable[[WebSession], Awaitable[WebSession]]:
    """A dependency: the current session, if its roles grant `permission`; else 403."""

    async def check(web: CurrentSession) -> WebSession:
        web.require(permission)
        return web

    return check


async def read_form(request: Request) -> FormData:
    """The body as a form (URL-encoded or multipart without files); InvalidForm when it
    is not one."""
    try:
        return await request.form(max_files=0, max_fields=MAX_FIELDS)
    except (HTTPException, MultiPartException) as error:
        raise InvalidForm({"form": "The form could not be read; send it again."}) from error


def field(form: FormData, name: str) -> str:
    """A text field of the form ("" when it is missing, or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def _checked_form(request: Request, web: CurrentSession) -> FormData:
    form = await read_form(request)
    token = form.get("csrf_token")
    if not isinstance(token, str) or not same_secret(web.csrf_token, token):
        raise CsrfRefused
    return form


CheckedForm = Annotated[FormData, Depends(_checked_form)]
"""The POSTed form of a logged-in user, its `csrf_token` checked (constant time) against
the session's: missing or wrong -> CsrfRefused (403, nothing done). Depends on
`CurrentSession`, so a request without a session is a 401 first."""
