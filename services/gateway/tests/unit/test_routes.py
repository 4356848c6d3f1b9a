from __future__ import annotations

import pytest

from flotilla_gateway.routes import ROUTES, Route, RouteTable, is_safe_path


def _service_of(table: RouteTable[Route], path: str) -> str | None:
    route = table.match(path)
    return route.service if route is not None else None


@pytest.fixture
def table() -> RouteTable[Route]:
    return RouteTable((route, route) for route in ROUTES)


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/auth/token", "auth"),
        ("/api/v1/auth/users/7/roles", "auth"),
        ("/api/v1/auth/", "auth"),
        ("/.well-known/jwks.json", "auth"),
        ("/api/v1/accounts", "accounts"),
        ("/api/v1/accounts/", "accounts"),
        ("/api/v1/accounts/acc-1/entries", "accounts"),
    ],
)
def test_routed_paths(table: RouteTable[Route], path: str, service: str) -> None:
    assert _service_of(table, path) == service


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/accountsX",
        "/api/v1/accounts-admin/x",
        "/api/v1/auth",  # the auth prefix is `/api/v1/auth/`: only paths below it
        "/api/v1/authz/x",
        "/.well-known/jwks.json/x",
        "/.well-known/jwks.jsonx",
        "/api/v1",
        "/",
        "",
        "/API/V1/ACCOUNTS",
    ],
)
def test_everything_else_is_denied(table: RouteTable[Route], path: str) -> None:
    assert table.match(path) is None


def test_public_and_protected_routes(table: RouteTable[Route]) -> None:
    auth = table.match("/api/v1/auth/token")
    jwks = table.match("/.well-known/jwks.json")
    accounts = table.match("/api/v1/accounts/1")
    assert auth is not None
    assert auth.public
    assert jwks is not None
    assert jwks.public
    assert accounts is not None
    assert not accounts.public


def test_longest_prefix_wins_whatever_the_declaration_order() -> None:
    broad = Route("/api/", service="broad")
    narrow = Route("/api/v1/special", service="special")
    table = RouteTable([(broad, broad), (narrow, narrow)])
    assert _service_of(table, "/api/v1/special/1") == "special"
    assert _service_of(table, "/api/v1/specialX") == "broad"
    assert _service_of(table, "/api/v2") == "broad"


def test_payloads_are_what_match_returns() -> None:
    table = RouteTable([(Route("/x", service="s"), 1), (Route("/y", service="t", exact=True), 2)])
    assert table.match("/x/1") == 1
    assert table.match("/y") == 2
    assert table.match("/z") is None


def test_empty_table_matches_nothing() -> None:
    assert RouteTable[int]([]).match("/anything") is None


def test_routes_must_be_absolute_and_exact_paths_unique() -> None:
    with pytest.raises(ValueError, match="must start with"):
        Route("api", service="s")
    twice = Route("/a", service="s", exact=True)
    with pytest.raises(ValueError, match="duplicate"):
        RouteTable([(twice, 1), (twice, 2)])


def test_labels_are_bounded_names() -> None:
    assert Route("/api/v1/auth/", service="auth").label == "/api/v1/auth/*"
    assert Route("/api/v1/accounts", service="accounts").label == "/api/v1/accounts*"
    assert Route("/.well-known/jwks.json", service="auth", exact=True).label == (
        "/.well-known/jwks.json"
    )


@pytest.mark.parametrize(
    "path",
    ["/api/v1/accounts/1", "/a.b/c..d/.e", "/api/v1/accounts/%2F", "/", "/x/...", "/%2e%2ex"],
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
        "*",
        "http://example.com/api/v1/auth/x",
        "api/v1/auth/x",
    ],
)
def test_unsafe_paths(path: str) -> None:
    assert not is_safe_path(path)
