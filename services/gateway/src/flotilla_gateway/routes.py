"""The access policy: which operations the gateway exposes, to which service, for whom.

Deny by default. Each `RoutePolicy` names one method on one path template, the service
that owns it, and who may call it: `PUBLIC`, `AUTHENTICATED` (any valid token) or a
permission from `flotilla_kit.rbac`. A request that matches no entry never reaches a
service: an unlisted path gets a 404, a listed path with an unlisted method a 405.

Templates use `{name}` for exactly one path segment (no slash, never empty). The table is
compiled once: per method, a dict of exact paths and one regular expression for the
templated ones, so matching costs one dict lookup and at most one `fullmatch` whatever
the number of routes. When two templates could match the same path, the most specific
one wins: an exact path first, then the template whose first literal segment comes
earliest. `POLICY` itself has no such overlaps (a test checks it), so its meaning never
depends on that rule.

An entry for a sharded service may say how to find the shard (`shard_by`): from the
`{account_id}` in the path (`SHARD_BY_ACCOUNT_ID`), from the owner of the accounts
concerned (`SHARD_BY_OWNER`: the `owner_id` query parameter, else the token's subject),
or from the shard's number in a `{shard}` segment (`SHARD_BY_NUMBER`: an operator
reading one shard's own records, e.g. its audit log). `flotilla_gateway.shards` does the finding.

Two kinds of entry are not plain API operations. `page=True` marks an HTML page for a
browser (the `web` service's): the gateway sends it with the page Content-Security-Policy
(`headers.PAGE_CSP`) instead of the API's. Entries of the service `GATEWAY` are answered
by the gateway itself (`endpoints.LocalEndpoints.authorized_handlers`), after the same
token, permission and rate-limit checks as any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar, get_args

__all__ = [
    "AUTHENTICATED",
    "GATEWAY",
    "POLICY",
    "PUBLIC",
    "SHARD_BY_ACCOUNT_ID",
    "SHARD_BY_NUMBER",
    "SHARD_BY_OWNER",
    "RoutePolicy",
    "RouteTable",
    "ShardBy",
    "is_safe_path",
    "operation_owner",
    "overlaps",
    "template_key",
]

T = TypeVar("T")

PUBLIC: Final = "public"
AUTHENTICATED: Final = "authenticated"

# The gateway's own operations (answered by it, never forwarded).
GATEWAY: Final = "gateway"

ShardBy = Literal["account_id", "owner", "shard"]
# The shard is the one the `{account_id}` path segment names (`acc_<shard>_<hex>`).
SHARD_BY_ACCOUNT_ID: Final = "account_id"
# The shard is the owner's home shard; the owner is `?owner_id=`, else the token's subject.
SHARD_BY_OWNER: Final = "owner"
# The shard is the one the `{shard}` path segment numbers (`0`, `1`, ...).
SHARD_BY_NUMBER: Final = "shard"
_SHARD_BY: tuple[str, ...] = get_args(ShardBy)

# Routes whose responses must never be stored by a cache (tokens, user data).
NO_STORE_PREFIXES: Final = ("/api/v1/auth/",)
# Service-to-service endpoints: never reachable through the gateway, whatever the table says.
_INTERNAL = "/internal"

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LITERAL = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]+")
_PERMISSION = re.compile(r"[a-z][a-z0-9-]*(?::[a-z][a-z0-9-]*)+")
# What a `{name}` segment matches in a request path: no slash, no space or control byte.
_SEGMENT = r"[^/\x00-\x20\x7f]+"


def _segments(path: str) -> list[str]:
    return [] if path == "/" else path.split("/")[1:]


def _is_parameter(segment: str) -> bool:
    return segment.startswith("{")


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """One operation the gateway exposes: `method` on `path` goes to `service` for `access`."""

    method: str
    path: str
    service: str
    access: str
    # None: the gateway's default (`upstream_timeout_s`).
    timeout_s: float | None = None
    # How to find the shard when the service is sharded; None: any instance will do.
    shard_by: ShardBy | None = None
    # An HTML page for a browser: sent with the page CSP instead of the API's.
    page: bool = False

    def __post_init__(self) -> None:
        where = f"{self.method} {self.path}"
        if self.method not in _METHODS:
            raise ValueError(f"{where}: method must be one of {', '.join(_METHODS)}")
        if not self.path.startswith("/"):
            raise ValueError(f"{where}: path must start with '/'")
        if self.path == _INTERNAL or self.path.startswith(_INTERNAL + "/"):
            raise ValueError(f"{where}: internal endpoints are never routed")
        names: list[str] = []
        for segment in _segments(self.path):
            parameter = _PARAMETER.fullmatch(segment)
            if parameter is not None:
                names.append(parameter.group(1))
            elif segment in (".", "..") or not _LITERAL.fullmatch(segment):
                # Empty segments (`//`, a trailing `/`), partial parameters (`{a}.json`)
                # and anything percent-encoded are refused rather than half-understood.
                raise ValueError(f"{where}: bad segment {segment!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: a parameter name is used twice")
        if self.access not in (PUBLIC, AUTHENTICATED) and not _PERMISSION.fullmatch(self.access):
            raise ValueError(
                f"{where}: access must be PUBLIC, AUTHENTICATED or a permission "
                f"('resource:action'), not {self.access!r}"
            )
        if self.shard_by is not None:
            self._check_shard_by(where, names)

    def _check_shard_by(self, where: str, names: list[str]) -> None:
        if self.shard_by not in _SHARD_BY:
            raise ValueError(f"{where}: shard_by must be one of {', '.join(_SHARD_BY)}")
        if self.shard_by == SHARD_BY_ACCOUNT_ID and SHARD_BY_ACCOUNT_ID not in names:
            raise ValueError(f"{where}: shard_by account_id needs an {{account_id}} segment")
        if self.shard_by == SHARD_BY_NUMBER and SHARD_BY_NUMBER not in names:
            raise ValueError(f"{where}: shard_by shard needs a {{shard}} segment")
        if self.shard_by == SHARD_BY_OWNER and self.access == PUBLIC:
            # Without a token there may be no owner to ask about.
            raise ValueError(f"{where}: shard_by owner needs a token, not public access")

    @property
    def public(self) -> bool:
        return self.access == PUBLIC

    @property
    def permission(self) -> str | None:
        """The permission a token must grant; None for public and any-token routes."""
        return None if self.access in (PUBLIC, AUTHENTICATED) else self.access

    @property
    def templated(self) -> bool:
        return "{" in self.path

    @property
    def no_store(self) -> bool:
        """Whether `Cache-Control: no-store` replaces what the service says."""
        return self.path.startswith(NO_STORE_PREFIXES)

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "service": self.service,
            "access": self.access,
            "shard_by": self.shard_by,
            "page": self.page,
        }


def _r(
    method: str, path: str, service: str, access: str, *, shard_by: ShardBy | None = None
) -> RoutePolicy:
    return RoutePolicy(method, path, service, access, shard_by=shard_by)


def _page(method: str, path: str) -> RoutePolicy:
    """A page of the web service: public here (it keeps its own sessions), the page CSP."""
    return RoutePolicy(method, path, "web", PUBLIC, page=True)


_ACCOUNT: Final = SHARD_BY_ACCOUNT_ID
_OWNER: Final = SHARD_BY_OWNER
_NUMBER: Final = SHARD_BY_NUMBER


POLICY: tuple[RoutePolicy, ...] = (
    _r("POST", "/api/v1/auth/token", "auth", PUBLIC),
    _r("POST", "/api/v1/auth/logout", "auth", PUBLIC),
    _r("GET", "/api/v1/auth/me", "auth", AUTHENTICATED),
    _r("POST", "/api/v1/auth/users", "auth", "users:admin"),
    _r("GET", "/api/v1/auth/users", "auth", "users:read"),
    _r("GET", "/api/v1/auth/users/{user_id}", "auth", "users:read"),
    _r("PUT", "/api/v1/auth/users/{user_id}/roles/{role}", "auth", "users:admin"),
    _r("DELETE", "/api/v1/auth/users/{user_id}/roles/{role}", "auth", "users:admin"),
    _r("POST", "/api/v1/auth/users/{user_id}/lock", "auth", "users:admin"),
    _r("POST", "/api/v1/auth/users/{user_id}/unlock", "auth", "users:admin"),
    _r("GET", "/.well-known/jwks.json", "auth", PUBLIC),
    _r("GET", "/api/v1/accounts", "accounts", "accounts:read", shard_by=_OWNER),
    _r("POST", "/api/v1/accounts", "accounts", "accounts:open", shard_by=_OWNER),
    _r("GET", "/api/v1/accounts/{account_id}", "accounts", "accounts:read", shard_by=_ACCOUNT),
    _r(
        "POST",
        "/api/v1/accounts/{account_id}/deposits",
        "accounts",
        "accounts:deposit",
        shard_by=_ACCOUNT,
    ),
    _r(
        "GET",
        "/api/v1/accounts/{account_id}/entries",
        "accounts",
        "accounts:read",
        shard_by=_ACCOUNT,
    ),
    _r("POST", "/api/v1/transfers", "payments", "payments:transfer"),
    _r("GET", "/api/v1/transfers", "payments", "payments:read"),
    _r("GET", "/api/v1/transfers/{transfer_id}", "payments", "payments:read"),
    # The shop: a public catalogue, administration for staff; reservations are the
    # orders service's own business with inventory (gRPC, never through here).
    _r("GET", "/api/v1/products", "inventory", PUBLIC),
    _r("GET", "/api/v1/products/{product_id}", "inventory", PUBLIC),
    _r("POST", "/api/v1/products", "inventory", "inventory:write"),
    _r("PATCH", "/api/v1/products/{product_id}", "inventory", "inventory:write"),
    _r(
        "POST",
        "/api/v1/products/{product_id}/stock-adjustments",
        "inventory",
        "inventory:write",
    ),
    _r("POST", "/api/v1/orders", "orders", "orders:create"),
    _r("GET", "/api/v1/orders", "orders", "orders:read"),
    _r("GET", "/api/v1/orders/{order_id}", "orders", "orders:read"),
    _r("POST", "/api/v1/orders/{order_id}/refund", "orders", "orders:refund"),
    _r("GET", "/api/v1/order-history", "orders", "orders:read"),
    _r("GET", "/api/v1/invoices", "billing", "invoices:read"),
    _r("GET", "/api/v1/invoices/{invoice_id}", "billing", "invoices:read"),
    # For operators: what each owner knows of the system (the console of the web service).
    _r("GET", "/api/v1/system/instances", GATEWAY, "system:read"),
    _r("GET", "/api/v1/in-doubt-transfers", "payments", "payments:read:any"),
    _r("GET", "/api/v1/audit/auth", "auth", "audit:read"),
    _r("GET", "/api/v1/audit/payments", "payments", "audit:read"),
    _r("GET", "/api/v1/audit/inventory", "inventory", "audit:read"),
    _r("GET", "/api/v1/audit/accounts/{shard}", "accounts", "audit:read", shard_by=_NUMBER),
    # The web front end (flotilla_web): the customer's pages, then the operator console.
    _page("GET", "/"),
    _page("GET", "/login"),
    _page("POST", "/login"),
    _page("POST", "/logout"),
    _page("GET", "/static/{name}"),
    _page("GET", "/accounts"),
    _page("GET", "/accounts/{account_id}"),
    _page("GET", "/transfer"),
    _page("POST", "/transfer"),
    _page("GET", "/shop"),
    _page("GET", "/basket"),
    _page("POST", "/basket"),
    _page("POST", "/basket/remove"),
    _page("POST", "/checkout"),
    _page("GET", "/orders"),
    _page("GET", "/orders/{order_id}"),
    _page("GET", "/orders/{order_id}/status"),
    _page("GET", "/invoices"),
    _page("GET", "/invoices/{invoice_id}/pdf"),
    _page("GET", "/console"),
    _page("GET", "/console/system.json"),
    _page("GET", "/console/traces"),
    _page("GET", "/console/traces/{trace_id}"),
    _page("GET", "/console/pending"),
    _page("GET", "/console/dead-letters"),
    _page("POST", "/console/dead-letters/{sequence}/requeue"),
    _page("GET", "/console/audit"),
    _page("GET", "/console/scaling"),
    _page("POST", "/console/scale"),
    # flotilla new service: routes
)


def template_key(path: str) -> str:
    """A template with its parameter names erased: `/a/{id}` and `/a/{x}` are the same route."""
    return _PARAMETER.sub("{}", path)


def operation_owner(policy: Iterable[RoutePolicy]) -> Callable[[str, str], str | None]:
    """`owner(method, path)`: the service the policy sends an operation to, else None.

    For documents, not requests: `path` is a template, and parameter names do not matter
    (`/a/{id}` is `/a/{account_id}`). HEAD goes with GET.
    """
    owners: dict[tuple[str, str], str] = {}
    for entry in policy:
        key = template_key(entry.path)
        owners[(entry.method, key)] = entry.service
        if entry.method == "GET":
            owners.setdefault(("HEAD", key), entry.service)

    def owner(method: str, path: str) -> str | None:
        return owners.get((method, template_key(path)))

    return owner


def overlaps(a: RoutePolicy, b: RoutePolicy) -> bool:
    """Whether some request could match both entries (same method, compatible segments).

    HEAD counts as GET, since every GET route answers HEAD too.
    """
    if _effective(a.method) != _effective(b.method):
        return False
    first, second = _segments(a.path), _segments(b.path)
    if len(first) != len(second):
        return False
    return all(
        x == y or _is_parameter(x) or _is_parameter(y) for x, y in zip(first, second, strict=True)
    )


def _effective(method: str) -> str:
    return "GET" if method == "HEAD" else method


def _specificity(path: str) -> tuple[int, ...]:
    # Lower sorts first: a literal segment beats a parameter at the first place they differ.
    return tuple(1 if _is_parameter(segment) else 0 for segment in _segments(path))


def _pattern(path: str) -> str:
    return "/" + "/".join(
        _SEGMENT if _is_parameter(segment) else re.escape(segment) for segment in _segments(path)
    )


class _MethodRoutes(Generic[T]):
    """The routes of one method: exact paths, then one alternation of templates."""

    __slots__ = ("exact", "pattern", "payloads")

    def __init__(self, exact: dict[str, T], templates: list[tuple[RoutePolicy, T]]) -> None:
        self.exact = exact
        ordered = sorted(templates, key=lambda item: _specificity(item[0].path))
        # Group i+1 is the i-th alternative: `lastindex` names the one that matched.
        self.payloads: tuple[T | None, ...] = (None, *(payload for _, payload in ordered))
        self.pattern = (
            re.compile("|".join(f"({_pattern(policy.path)})" for policy, _ in ordered))
            if ordered
            else None
        )


class RouteTable(Generic[T]):
    """Policy entries compiled for matching; each carries a payload (what the caller acts on).

    Every GET entry also answers HEAD, unless HEAD has an entry of its own.
    """

    def __init__(self, entries: Iterable[tuple[RoutePolicy, T]]) -> None:
        declared: dict[str, dict[str, tuple[RoutePolicy, T]]] = {}
        for policy, payload in entries:
            routes = declared.setdefault(policy.method, {})
            key = template_key(policy.path)
            if key in routes:
                raise ValueError(f"duplicate route {policy.method} {policy.path}")
            routes[key] = (policy, payload)
        head = declared.setdefault("HEAD", {})
        for key, entry in declared.get("GET", {}).items():
            head.setdefault(key, entry)
        self._by_method: dict[bytes, _MethodRoutes[T]] = {}
        for method, routes in declared.items():
            if not routes:
                continue
            exact = {p.path: payload for p, payload in routes.values() if not p.templated}
            templates = [(p, payload) for p, payload in routes.values() if p.templated]
            self._by_method[method.encode("ascii")] = _MethodRoutes(exact, templates)
        self._methods = tuple(
            sorted(
                (m.decode("ascii") for m in self._by_method),
                key=lambda m: (_METHODS.index(m), m),
            )
        )

    def match(self, method: bytes, path: str) -> T | None:
        routes = self._by_method.get(method)
        if routes is None:
            return None
        payload = routes.exact.get(path)
        if payload is not None:
            return payload
        pattern = routes.pattern
        if pattern is None:
            return None
        found = pattern.fullmatch(path)
        if found is None:
            return None
        return routes.payloads[found.lastindex or 0]

    def allowed(self, path: str) -> tuple[str, ...]:
        """The methods `path` answers (for `Allow`); empty when no entry has the path.

        Off the hot path: only asked after `match` found nothing.
        """
        return tuple(m for m in self._methods if self.match(m.encode("ascii"), path) is not None)


_UNSAFE = re.compile(r"(?:^|/)(?:\.|%2e){1,2}(?:/|$)|%2f|%5c", re.IGNORECASE)


def is_safe_path(path: str) -> bool:
    """An origin-form path with no `.` or `..` segment and no encoded `/` or `\\`.

    Services decode and do not normalise paths, so a dot segment or an encoded slash could
    make a path that the gateway routes to one operation mean another inside the service
    (`/users/x%2Froles%2Fadmin` is one segment here, three there); refusing them is
    cheaper than reasoning about every service's router.
    """
    if not path.startswith("/"):
        return False
    if "." not in path and "%" not in path:
        return True
    return _UNSAFE.search(path) is None
