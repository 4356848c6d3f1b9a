"""The web service's errors: the entrypoints answer each with a page (or, for the JSON
endpoints, a problem)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "ApiFailed",
    "CsrfRefused",
    "Forbidden",
    "GatewayUnavailable",
    "InvalidForm",
    "NotFound",
    "NotLoggedIn",
    "WebError",
]


class WebError(Exception):
    """The root of the service's errors."""


class NotLoggedIn(WebError):
    """No session, or one that is unknown, tampered with, over or revoked: the browser
    goes back to the login page and its cookie is cleared."""


class CsrfRefused(WebError):
    """A form without the session's CSRF token (or the login's double-submit token)."""


class Forbidden(WebError):
    """The user's roles do not grant what the page needs."""

    def __init__(self, permission: str) -> None:
        super().__init__(f"This page needs the permission {permission!r}.")
        self.permission = permission


class NotFound(WebError):
    """Nothing the user may see has that id."""


class InvalidForm(WebError):
    """Fields a form must not carry as they are: field name -> what is wrong."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = dict(errors)


class GatewayUnavailable(WebError):
    """The gateway did not answer in time (or not at all)."""


class ApiFailed(WebError):
    """The API answered with a status the page cannot explain (a 5xx, a surprise)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
