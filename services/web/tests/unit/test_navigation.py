"""Where the login page may send a browser afterwards: paths of this site only."""

from __future__ import annotations

import pytest

from flotilla_web.domain import safe_next


@pytest.mark.parametrize(
    "value", ["/accounts", "/orders/123?tab=lines", "/console/traces/abc", "/shop#top"]
)
def test_a_path_of_this_site_is_kept(value: str) -> None:
    assert safe_next(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "accounts",
        "https://evil.example/",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "javascript:alert(1)",
        "/accounts\n/evil",
        "/accounts\x00",
        "/a b",
        "/login",
        "/login?next=/x",
        "/logout",
        "/" + "a" * 1000,
    ],
)
def test_anything_else_is_dropped(value: str | None) -> None:
    assert safe_next(value) is None
