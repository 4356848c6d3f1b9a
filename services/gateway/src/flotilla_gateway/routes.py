"""The route table: which paths the gateway exposes, to which service, under which policy.

Deny by default: a path that matches no route is answered 404 by the gateway and never
reaches a service. The table is compiled once into a dict (exact paths) and one regular
expression (prefixes, longest first), so matching costs one dict lookup and one
`re.match` whatever the number of routes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["ROUTES", "Route", "RouteTable", "is_safe_path"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Route:
    """One exposed path or path prefix.

    A prefix that ends with `/` matches every path below it. A prefix without a trailing
    `/` matches itself and every path below it, at a segment boundary only: `/api/v1/accounts`
    matches `/api/v1/accounts` and `/api/v1/accounts/7`, never `/api/v1/accountsX`.
    """

    path: str
    service: str
    public: bool = False
    exact: bool = False
    # None: the gateway's default (`upstream_timeout_s`).
    timeout_s: float | None = None
    # The RBAC permission a caller's token must grant; None: any valid token (or none if
    # `public`). Checked once RBAC lands at the gateway.
    permission: str | None = None

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"route path must start with '/': {self.path!r}")

    @property
    def label(self) -> str:
        """A bounded name for metrics: the path, with `*` for prefixes."""
        return self.path if self.exact else self.path + "*"


ROUTES: tuple[Route, ...] = (
    Route("/api/v1/auth/", service="auth", public=True),
    Route("/.well-known/jwks.json", service="auth", public=True, exact=True),
    Route("/api/v1/accounts", service="accounts"),
)


class RouteTable(Generic[T]):
    """Routes compiled for matching; each carries a payload (what the caller acts on)."""

    def __init__(self, entries: Iterable[tuple[Route, T]]) -> None:
        self._exact: dict[str, T] = {}
        self._by_group: dict[str, T] = {}
        alternatives: list[tuple[int, str]] = []
        for index, (route, payload) in enumerate(entries):
            if route.exact:
                if route.path in self._exact:
                    raise ValueError(f"duplicate route {route.path!r}")
                self._exact[route.path] = payload
                continue
            group = f"r{index}"
            self._by_group[group] = payload
            escaped = re.escape(route.path)
            pattern = escaped if route.path.endswith("/") else escaped + "(?:/|$)"
            alternatives.append((len(route.path), f"(?P<{group}>{pattern})"))
        # Longest prefix first: the first alternative that matches is the most specific.
        alternatives.sort(key=lambda item: item[0], reverse=True)
        self._prefixes = (
            re.compile("|".join(pattern for _, pattern in alternatives)) if alternatives else None
        )

    def match(self, path: str) -> T | None:
        payload = self._exact.get(path)
        if payload is not None:
            return payload
        if self._prefixes is None:
            return None
        found = self._prefixes.match(path)
        if found is None or found.lastgroup is None:
            return None
        return self._by_group[found.lastgroup]


_DOT_SEGMENT = re.compile(r"(?:^|/)(?:\.|%2e){1,2}(?:/|$)", re.IGNORECASE)


def is_safe_path(path: str) -> bool:
    """An origin-form path with no `.` or `..` segment, plain or percent-encoded.

    Services do not normalise paths, so a dot segment could make a path that the gateway
    routes to one place mean another inside the service; refusing them is cheaper than
    reasoning about every service's router.
    """
    if not path.startswith("/"):
        return False
    if "." not in path and "%" not in path:
        return True
    return _DOT_SEGMENT.search(path) is None
