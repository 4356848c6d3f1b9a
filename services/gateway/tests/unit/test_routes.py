"""The policy table: template compilation, matching, 404 versus 405, and the policy itself."""

from __future__ import annotations

import itertools
import random

import pytest

from flotilla_gateway.routes import (
    AUTHENTICATED,
    GATEWAY,
    POLICY,
    PUBLIC,
    SHARD_BY_ACCOUNT_ID,
    SHARD_BY_OWNER,
    RoutePolicy,
    RouteTable,
    is_safe_path,
    overlaps,
    template_key,
)
from flotilla_kit.rbac import ROLE_PERMISSIONS


def entry(method: str, path: str, service: str = "s", access: str = PUBLIC) -> RoutePolicy:
    return RoutePolicy(method, path, service, access)


def table_of(*entries: RoutePolicy) -> RouteTable[RoutePolicy]:
    return RouteTable((e, e) for e in entries)


def matched(table: RouteTable[RoutePolicy], method: str, path: str) -> str | None:
    found = table.match(method.encode(), path)
    return None if found is None else f"{found.method} {found.path}"


@pytest.fixture(scope="module")
def policy() -> RouteTable[RoutePolicy]:
    return table_of(*POLICY)


# the real policy


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/api/v1/auth/token", "POST /api/v1/auth/token"),
        ("GET", "/api/v1/auth/me", "GET /api/v1/auth/me"),
        ("HEAD", "/api/v1/auth/me", "GET /api/v1/auth/me"),
        ("GET", "/api/v1/auth/users", "GET /api/v1/auth/users"),
        ("POST", "/api/v1/auth/users", "POST /api/v1/auth/users"),
        ("GET", "/api/v1/auth/users/u-1", "GET /api/v1/auth/users/{user_id}"),
        (
            "PUT",
            "/api/v1/auth/users/u-1/roles/admin",
            "PUT /api/v1/auth/users/{user_id}/roles/{role}",
        ),
        (
            "DELETE",
            "/api/v1/auth/users/u-1/roles/admin",
            "DELETE /api/v1/auth/users/{user_id}/roles/{role}",
        ),
        ("POST", "/api/v1/auth/users/u-1/lock", "POST /api/v1/auth/users/{user_id}/lock"),
        ("POST", "/api/v1/auth/users/u-1/unlock", "POST /api/v1/auth/users/{user_id}/unlock"),
        ("GET", "/.well-known/jwks.json", "GET /.well-known/jwks.json"),
        ("GET", "/api/v1/accounts", "GET /api/v1/accounts"),
        ("POST", "/api/v1/accounts", "POST /api/v1/accounts"),
        ("GET", "/api/v1/accounts/acc-1", "GET /api/v1/accounts/{account_id}"),
        ("HEAD", "/api/v1/accounts/acc-1", "GET /api/v1/accounts/{account_id}"),
        ("POST", "/api/v1/accounts/acc-1/deposits", "POST /api/v1/accounts/{account_id}/deposits"),
        ("GET", "/api/v1/accounts/acc-1/entries", "GET /api/v1/accounts/{account_id}/entries"),
        ("HEAD", "/api/v1/accounts/acc-1/entries", "GET /api/v1/accounts/{account_id}/entries"),
        ("POST", "/api/v1/transfers", "POST /api/v1/transfers"),
        ("GET", "/api/v1/transfers", "GET /api/v1/transfers"),
        ("GET", "/api/v1/transfers/t-1", "GET /api/v1/transfers/{transfer_id}"),
        # A parameter is any one non-empty segment, whatever it looks like.
        ("GET", "/api/v1/accounts/me", "GET /api/v1/accounts/{account_id}"),
        ("GET", "/api/v1/accounts/a%20b", "GET /api/v1/accounts/{account_id}"),
    ],
)
def test_policy_routes(
    policy: RouteTable[RoutePolicy], method: str, path: str, expected: str
) -> None:
    assert matched(policy, method, path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/accountsX",
        "/api/v1/accounts/",  # a trailing slash is another path
        "/api/v1/accounts//deposits",  # an empty segment is no parameter
        "/api/v1/accounts/a/b",  # `{account_id}` never spans two segments
        "/api/v1/accounts/a/b/deposits",
        "/api/v1/accounts/acc-1/deposits/",
        "/api/v1/accounts/acc-1/entries/x",
        "/api/v1/transfers/",
        "/api/v1/transfers/t-1/x",
        "/api/v1/transfer",
        "/api/v1/auth/users/",
        "/api/v1/auth/users/u-1/roles",
        "/api/v1/auth/users/u-1/roles/admin/x",
        "/api/v1/auth",
        "/api/v1/auth/",
        "/api/v1/auth/refresh",
        "/api/v1/authz/token",
        "/.well-known/jwks.json/x",
        "/.well-known/jwks.jsonx",
        "/internal/v1/revocations",
        "/api/v1",
        "",
        "/API/V1/ACCOUNTS",
    ],
)
def test_everything_else_is_denied(policy: RouteTable[RoutePolicy], path: str) -> None:
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        assert policy.match(method.encode(), path) is None
    assert policy.allowed(path) == ()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/v1/accounts", ("GET", "HEAD", "POST")),
        ("PUT", "/api/v1/accounts/acc-1", ("GET", "HEAD")),
        ("GET", "/api/v1/accounts/acc-1/deposits", ("POST",)),
        ("POST", "/api/v1/accounts/acc-1/entries", ("GET", "HEAD")),
        ("DELETE", "/api/v1/transfers", ("GET", "HEAD", "POST")),
        ("POST", "/api/v1/transfers/t-1", ("GET", "HEAD")),
        ("GET", "/api/v1/auth/token", ("POST",)),
        ("OPTIONS", "/api/v1/auth/token", ("POST",)),  # a CORS preflight too
        ("GET", "/api/v1/auth/users/u-1/roles/r", ("PUT", "DELETE")),
        ("POST", "/.well-known/jwks.json", ("GET", "HEAD")),
    ],
)
def test_a_listed_path_with_another_method_says_what_is_allowed(
    policy: RouteTable[RoutePolicy], method: str, path: str, allow: tuple[str, ...]
) -> None:
    assert policy.match(method.encode(), path) is None
    assert policy.allowed(path) == allow


def test_no_two_policy_entries_overlap() -> None:
    clashes = [
        f"{a.method} {a.path} / {b.method} {b.path}"
        for a, b in itertools.combinations(POLICY, 2)
        if overlaps(a, b)
    ]
    assert clashes == []


def test_the_policy_has_the_agreed_entries() -> None:
    rows = {(e.method, e.path): (e.service, e.access, e.shard_by) for e in POLICY}
    assert len(rows) == len(POLICY) == 66
    assert rows[("POST", "/api/v1/auth/token")] == ("auth", PUBLIC, None)
    assert rows[("POST", "/api/v1/auth/logout")] == ("auth", PUBLIC, None)
    assert rows[("GET", "/api/v1/auth/me")] == ("auth", AUTHENTICATED, None)
    assert rows[("GET", "/.well-known/jwks.json")] == ("auth", PUBLIC, None)
    ledger = {key: row for key, row in rows.items() if row[0] in ("accounts", "payments")}
    assert ledger == {
        ("GET", "/api/v1/accounts"): ("accounts", "accounts:read", "owner"),
        ("POST", "/api/v1/accounts"): ("accounts", "accounts:open", "owner"),
        ("GET", "/api/v1/accounts/{account_id}"): ("accounts", "accounts:read", "account_id"),
        ("POST", "/api/v1/accounts/{account_id}/deposits"): (
            "accounts",
            "accounts:deposit",
            "account_id",
        ),
        ("GET", "/api/v1/accounts/{account_id}/entries"): (
            "accounts",
            "accounts:read",
            "account_id",
        ),
        ("POST", "/api/v1/transfers"): ("payments", "payments:transfer", None),
        ("GET", "/api/v1/transfers"): ("payments", "payments:read", None),
        ("GET", "/api/v1/transfers/{transfer_id}"): ("payments", "payments:read", None),
        ("GET", "/api/v1/in-doubt-transfers"): ("payments", "payments:read:any", None),
        ("GET", "/api/v1/audit/payments"): ("payments", "audit:read", None),
        ("GET", "/api/v1/audit/accounts/{shard}"): ("accounts", "audit:read", "shard"),
    }
    shop = {key: row for key, row in rows.items() if row[0] in ("inventory", "orders", "billing")}
    assert shop == {
        ("GET", "/api/v1/audit/inventory"): ("inventory", "audit:read", None),
        ("GET", "/api/v1/products"): ("inventory", PUBLIC, None),
        ("GET", "/api/v1/products/{product_id}"): ("inventory", PUBLIC, None),
        ("POST", "/api/v1/products"): ("inventory", "inventory:write", None),
        ("PATCH", "/api/v1/products/{product_id}"): ("inventory", "inventory:write", None),
        ("POST", "/api/v1/products/{product_id}/stock-adjustments"): (
            "inventory",
            "inventory:write",
            None,
        ),
        ("POST", "/api/v1/orders"): ("orders", "orders:create", None),
        ("GET", "/api/v1/orders"): ("orders", "orders:read", None),
        ("GET", "/api/v1/orders/{order_id}"): ("orders", "orders:read", None),
        ("POST", "/api/v1/orders/{order_id}/refund"): ("orders", "orders:refund", None),
        ("GET", "/api/v1/order-history"): ("orders", "orders:read", None),
        ("GET", "/api/v1/invoices"): ("billing", "invoices:read", None),
        ("GET", "/api/v1/invoices/{invoice_id}"): ("billing", "invoices:read", None),
    }
    assert rows[("GET", "/api/v1/audit/auth")] == ("auth", "audit:read", None)
    assert rows[("GET", "/api/v1/system/instances")] == (GATEWAY, "system:read", None)
    # The web front end: public here (its own sessions), every one sent as a page.
    pages = {key for key, row in rows.items() if row[0] == "web"}
    assert {("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("GET", "/console")} <= pages
    assert all(rows[key][1:] == (PUBLIC, None) for key in pages)
    assert {(e.method, e.path) for e in POLICY if e.page} == pages
    # Only the ledger is sharded.
    assert {e.service for e in POLICY if e.shard_by is not None} == {"accounts"}


def test_every_permission_in_the_policy_is_granted_by_some_role() -> None:
    granted = set().union(*ROLE_PERMISSIONS.values())
    needed = {e.permission for e in POLICY if e.permission is not None}
    assert needed
    assert needed <= granted


def test_nothing_internal_is_routed() -> None:
    assert not [e for e in POLICY if e.path.startswith("/internal")]
    with pytest.raises(ValueError, match="internal"):
        entry("GET", "/internal/v1/revocations")
    with pytest.raises(ValueError, match="internal"):
        entry("GET", "/internal")


# compilation and matching


def test_overlap_detection_catches_shadowing_entries() -> None:
    assert overlaps(entry("GET", "/a/{x}"), entry("GET", "/a/me"))
    assert overlaps(entry("GET", "/a/{x}/c"), entry("GET", "/a/b/{y}"))
    assert overlaps(entry("GET", "/a/{x}"), entry("HEAD", "/a/{y}"))  # HEAD is GET's
    assert not overlaps(entry("GET", "/a/{x}"), entry("POST", "/a/me"))
    assert not overlaps(entry("GET", "/a/{x}"), entry("GET", "/a/{x}/c"))
    assert not overlaps(entry("GET", "/a/b/{x}"), entry("GET", "/a/c/{x}"))
    assert not overlaps(entry("GET", "/a"), entry("GET", "/a/{x}"))


def test_the_most_specific_entry_wins_whatever_the_declaration_order() -> None:
    entries = [
        entry("GET", "/a/{x}"),
        entry("GET", "/a/me"),
        entry("GET", "/a/{x}/{y}"),
        entry("GET", "/a/{x}/c"),
        entry("GET", "/a/b/{y}"),
        entry("GET", "/a/b/c/{z}"),
    ]
    shuffler = random.Random(7)
    for _ in range(10):
        shuffler.shuffle(entries)
        table = table_of(*entries)
        assert matched(table, "GET", "/a/me") == "GET /a/me"  # exact beats template
        assert matched(table, "GET", "/a/you") == "GET /a/{x}"
        assert matched(table, "GET", "/a/b/c") == "GET /a/b/{y}"  # earliest literal wins
        assert matched(table, "GET", "/a/q/c") == "GET /a/{x}/c"
        assert matched(table, "GET", "/a/q/r") == "GET /a/{x}/{y}"
        assert matched(table, "GET", "/a/b/c/d") == "GET /a/b/c/{z}"
        assert matched(table, "GET", "/a/q/c/d") is None


def test_templates_match_whole_segments_only() -> None:
    table = table_of(entry("GET", "/files/{id}"), entry("GET", "/files/{id}/raw"))
    assert matched(table, "GET", "/files/7") == "GET /files/{id}"
    assert matched(table, "GET", "/files/7/raw") == "GET /files/{id}/raw"
    for path in (
        "/files/a/b",
        "/files/",
        "/files",
        "/files//raw",
        "/files/7/",
        "/files/7/raw/",
        "/files/7/rawx",
        "/filesX/7",
        "/x/files/7",
        "/files/7\n",
    ):
        assert table.match(b"GET", path) is None, path


def test_literals_are_not_regular_expressions() -> None:
    table = table_of(entry("GET", "/v1.0/{id}"), entry("GET", "/a+b"))
    assert matched(table, "GET", "/v1.0/x") == "GET /v1.0/{id}"
    assert table.match(b"GET", "/v1x0/x") is None
    assert matched(table, "GET", "/a+b") == "GET /a+b"
    assert table.match(b"GET", "/aab") is None


def test_head_follows_get_unless_declared() -> None:
    table = table_of(
        entry("GET", "/a", service="get"),
        entry("GET", "/b", service="get"),
        entry("HEAD", "/b", service="head"),
        entry("POST", "/c"),
    )
    a = table.match(b"HEAD", "/a")
    b = table.match(b"HEAD", "/b")
    assert a is not None
    assert a.service == "get"
    assert b is not None
    assert b.service == "head"
    assert table.match(b"HEAD", "/c") is None
    assert table.allowed("/a") == ("GET", "HEAD")
    assert table.allowed("/c") == ("POST",)


def test_methods_are_matched_exactly() -> None:
    table = table_of(entry("GET", "/a"))
    assert table.match(b"get", "/a") is None
    assert table.match(b"POST", "/a") is None


def test_payloads_are_what_match_returns() -> None:
    table = RouteTable([(entry("GET", "/x/{id}"), 1), (entry("GET", "/y"), 2)])
    assert table.match(b"GET", "/x/1") == 1
    assert table.match(b"GET", "/y") == 2
    assert table.match(b"GET", "/z") is None


def test_empty_table_matches_nothing() -> None:
    table = RouteTable[int]([])
    assert table.match(b"GET", "/anything") is None
    assert table.allowed("/anything") == ()


def test_duplicates_are_refused_even_with_other_parameter_names() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        table_of(entry("GET", "/a"), entry("GET", "/a"))
    with pytest.raises(ValueError, match="duplicate"):
        table_of(entry("GET", "/a/{x}"), entry("GET", "/a/{y}"))
    assert template_key("/a/{x}/b/{y}") == "/a/{}/b/{}"


@pytest.mark.parametrize(
    ("method", "path", "access", "message"),
    [
        ("GET", "api", PUBLIC, "must start with"),
        ("GET", "/a/", PUBLIC, "bad segment"),
        ("GET", "/a//b", PUBLIC, "bad segment"),
        ("GET", "/a/{id}.json", PUBLIC, "bad segment"),
        ("GET", "/a/{}", PUBLIC, "bad segment"),
        ("GET", "/a/{x/y}", PUBLIC, "bad segment"),
        ("GET", "/a/%2F", PUBLIC, "bad segment"),
        ("GET", "/a/../b", PUBLIC, "bad segment"),
        ("GET", "/a/{x}/{x}", PUBLIC, "twice"),
        ("get", "/a", PUBLIC, "method"),
        ("CONNECT", "/a", PUBLIC, "method"),
        ("GET", "/a", "admin", "access"),
        ("GET", "/a", "Accounts:Read", "access"),
        ("GET", "/a", "", "access"),
    ],
)
def test_malformed_entries_are_refused(method: str, path: str, access: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RoutePolicy(method, path, "s", access)


def test_shard_by_is_checked_against_the_entry() -> None:
    by_id = RoutePolicy("GET", "/a/{account_id}/b", "s", "a:read", shard_by=SHARD_BY_ACCOUNT_ID)
    by_owner = RoutePolicy("GET", "/a", "s", AUTHENTICATED, shard_by=SHARD_BY_OWNER)
    assert (by_id.shard_by, by_owner.shard_by) == ("account_id", "owner")
    with pytest.raises(ValueError, match="needs an \\{account_id\\} segment"):
        RoutePolicy("GET", "/a/{id}", "s", "a:read", shard_by=SHARD_BY_ACCOUNT_ID)
    with pytest.raises(ValueError, match="needs a token"):
        RoutePolicy("GET", "/a", "s", PUBLIC, shard_by=SHARD_BY_OWNER)
    with pytest.raises(ValueError, match="shard_by must be one of"):
        RoutePolicy("GET", "/a", "s", "a:read", shard_by="region")  # type: ignore[arg-type]


def test_access_kinds() -> None:
    public = entry("POST", "/t", access=PUBLIC)
    anyone = entry("GET", "/me", access=AUTHENTICATED)
    admins = entry("POST", "/u", access="users:admin")
    assert (public.public, public.permission) == (True, None)
    assert (anyone.public, anyone.permission) == (False, None)
    assert (admins.public, admins.permission) == (False, "users:admin")
    assert admins.as_json() == {
        "method": "POST",
        "path": "/u",
        "service": "s",
        "access": "users:admin",
        "shard_by": None,
        "page": False,
    }


def test_only_auth_api_routes_force_no_store() -> None:
    no_store = {f"{e.method} {e.path}" for e in POLICY if e.no_store}
    assert "POST /api/v1/auth/token" in no_store
    assert "GET /api/v1/auth/users/{user_id}" in no_store
    assert "GET /.well-known/jwks.json" not in no_store
    assert not [e for e in POLICY if e.no_store and e.service != "auth"]


# path safety


@pytest.mark.parametrize(
    "path",
    ["/api/v1/accounts/1", "/a.b/c..d/.e", "/api/v1/accounts/%20", "/", "/x/...", "/%2e%2ex"],
)
def test_safe_paths(path: str) -> None:
    assert is_safe_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/auth/../accounts/1",
        "/api/v1/auth/./x",
        "/api/v1/auth/..",
        "/api/v1/auth/%2e%2e/accounts",
        "/api/v1/auth/%2E./accounts",
        "/api/v1/auth/.%2e",
        "/..",
        # One segment here, several in the service once decoded.
        "/api/v1/auth/users/u-1%2Froles%2Fadmin",
        "/api/v1/accounts/a%2fb",
        "/api/v1/accounts/a%5Cb",
        "*",
        "http://example.com/api/v1/auth/x",
        "api/v1/auth/x",
    ],
)
def test_unsafe_paths(path: str) -> None:
    assert not is_safe_path(path)
