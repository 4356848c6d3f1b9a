"""Who may call a DRF view: the kit's permission classes, deny by default.

`public`, `authenticated` and `require_permission("x:y")` are DRF permission classes. The
token is checked as `flotilla_kit.security` checks it (the same `TokenVerifier`, its cache
first: a token seen before costs no hop to the event loop); a refusal is a problem (401
with `WWW-Authenticate`, 403 naming the permission), raised from `has_permission` and
answered by the kit's exception handler. `DenyAll` is REST framework's default permission
class: a view that declares none is refused when the app is built, and would be refused
here if it were served anyway.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from rest_framework.permissions import BasePermission

from flotilla_kit.problems import Problem
from flotilla_kit.security import forbidden
from flotilla_kit.tokens import Principal

if TYPE_CHECKING:
    from django.http import HttpRequest
    from rest_framework.request import Request
    from rest_framework.views import APIView

    from flotilla_kit.wsgi import Chassis

__all__ = [
    "CHASSIS_KEY",
    "DenyAll",
    "KitPermission",
    "PermissionRule",
    "authenticated",
    "current_principal",
    "public",
    "require_permission",
]

# Where `FlotillaDjango` leaves its chassis in the WSGI environ (`request.META`).
CHASSIS_KEY = "flotilla.chassis"
_PRINCIPAL = "_flotilla_principal"


def _principal_of(request: Request) -> Principal:
    chassis: Chassis = request.META[CHASSIS_KEY]
    principal = chassis.principal(request.META.get("HTTP_AUTHORIZATION", ""))
    setattr(request._request, _PRINCIPAL, principal)
    return principal


def current_principal(request: Request | HttpRequest) -> Principal:
    """The caller of an `authenticated` or `require_permission` view."""
    principal: Principal | None = getattr(request, _PRINCIPAL, None)
    if principal is None:
        raise RuntimeError(
            "current_principal(request) is for a view whose permission_classes hold "
            "authenticated or require_permission(...)"
        )
    return principal


class KitPermission(BasePermission):
    """The kit's permission classes (the build-time check names them in its message)."""


class public(KitPermission):  # noqa: N801 - used as a rule's name: [public]
    """Anyone may call the view (say so: a view without a rule is refused)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return True


class authenticated(KitPermission):  # noqa: N801 - used as a rule's name: [authenticated]
    """Any caller with a valid access token (`current_principal(request)`)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        _principal_of(request)
        return True


class PermissionRule(KitPermission):
    """The classes `require_permission` makes (`permission` is the one they need)."""

    permission = ""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not _principal_of(request).can(self.permission):
            raise forbidden(self.permission)
        return True


@functools.cache
def require_permission(permission: str) -> type[BasePermission]:
    """Callers whose roles grant `permission` (401 without a valid token, 403 without the
    permission), as `flotilla_kit.security.require_permission`."""
    attributes: dict[str, Any] = {
        "permission": permission,
        "__doc__": f"Callers granted {permission!r}.",
        "__module__": __name__,
    }
    return type(f"require_permission({permission!r})", (PermissionRule,), attributes)


class DenyAll(BasePermission):
    """REST framework's default permission class here: a view that declares no access rule
    is refused (the build refuses it first; this is the second line)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        raise Problem(403, "forbidden", "Forbidden", "This route declares no access rule.")
