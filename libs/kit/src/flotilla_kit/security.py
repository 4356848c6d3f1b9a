"""FastAPI dependencies that turn a bearer token into a `Principal`, or a 401/403 problem.

Every service verifies the token itself, even behind the gateway (defense in depth).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from flotilla_kit.logs import get_logger
from flotilla_kit.problems import Problem
from flotilla_kit.tokens import Principal, TokenError, TokenVerifier

__all__ = ["Authenticated", "current_principal", "require_permission"]

_log = get_logger("flotilla.security")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flotilla"'}


def _unauthenticated(detail: str) -> Problem:
    return Problem(401, "unauthenticated", "Authentication required", detail, headers=_CHALLENGE)


async def current_principal(request: Request) -> Principal:
    verifier: TokenVerifier = request.app.state.token_verifier
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated("A bearer access token is required.")
    try:
        return await verifier.verify(token.strip())
    except TokenError as exc:
        _log.info("token rejected", reason=str(exc))
        raise _unauthenticated("The access token is invalid or expired.") from exc


Authenticated = Annotated[Principal, Depends(current_principal)]


def require_permission(permission: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits only callers whose roles grant `permission`."""

    async def check(principal: Authenticated) -> Principal:
        if not principal.can(permission):
            raise Problem(
                403, "forbidden", "Forbidden", f"This needs the permission {permission!r}."
            )
        return principal

    return check
