"""FastAPI dependencies that turn a bearer token into a `Principal`, or a 401/403 problem,
and the pieces of that check the Flask and Django chassis share (`bearer_token`,
`token_refused`, `forbidden`).

Every service verifies the token itself, even behind the gateway (defense in depth).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from flotilla_kit.logs import get_logger
from flotilla_kit.problems import Problem
from flotilla_kit.tokens import Principal, TokenError, TokenVerifier

__all__ = [
    "Authenticated",
    "bearer_token",
    "current_principal",
    "forbidden",
    "require_permission",
    "token_refused",
]

_log = get_logger("flotilla.security")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flotilla"'}


def _unauthenticated(detail: str) -> Problem:
    return Problem(401, "unauthenticated", "Authentication required", detail, headers=_CHALLENGE)


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header; a 401 problem without one."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated("A bearer access token is required.")
    return token


def token_refused(exc: TokenError) -> Problem:
    """The 401 problem for a token the verifier refused (the reason is logged, not told)."""
    _log.info("token rejected", reason=str(exc))
    return _unauthenticated("The access token is invalid or expired.")


def forbidden(permission: str) -> Problem:
    """The 403 problem for a caller whose roles do not grant `permission`."""
    return Problem(403, "forbidden", "Forbidden", f"This needs the permission {permission!r}.")


async def current_principal(request: Request) -> Principal:
    verifier: TokenVerifier = request.app.state.token_verifier
    token = bearer_token(request.headers.get("authorization", ""))
    try:
        return await verifier.verify(token)
    except TokenError as exc:
        raise token_refused(exc) from exc


Authenticated = Annotated[Principal, Depends(current_principal)]


def require_permission(permission: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits only callers whose roles grant `permission`."""

    async def check(principal: Authenticated) -> Principal:
        if not principal.can(permission):
            raise forbidden(permission)
        return principal

    return check
