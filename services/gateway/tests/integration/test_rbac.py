"""Every policy entry against every role (and no token): what the gateway lets through."""

from __future__ import annotations

import re

from flotilla_gateway.routes import AUTHENTICATED, POLICY, PUBLIC, RoutePolicy
from flotilla_kit.problems import problem_type
from flotilla_kit.rbac import ROLE_PERMISSIONS
from flotilla_kit.testing import TokenMinter

from .harness import Stack

FORWARDED = "forwarded"
_PARAMETER = re.compile(r"\{(\w+)\}")


def concrete(path: str) -> str:
    """A request path for a template: each `{name}` becomes a value of its own."""
    return _PARAMETER.sub(lambda m: f"{m.group(1).replace('_', '-')}-7", path)


def expected(entry: RoutePolicy, role: str | None) -> str:
    if entry.access == PUBLIC:
        return FORWARDED
    if role is None:
        return "401"
    if entry.access == AUTHENTICATED or entry.access in ROLE_PERMISSIONS[role]:
        return FORWARDED
    return "403"


def with_head(policy: tuple[RoutePolicy, ...]) -> list[RoutePolicy]:
    """The policy as the gateway applies it: every GET entry answers HEAD too."""
    entries = list(policy)
    for entry in policy:
        if entry.method == "GET":
            entries.append(RoutePolicy("HEAD", entry.path, entry.service, entry.access))
    return entries


async def test_the_rbac_matrix(stack: Stack, tokens: TokenMinter) -> None:
    upstreams = {"auth": await stack.upstream("auth"), "accounts": await stack.upstream("accounts")}
    await stack.start_gateway()
    roles: list[str | None] = [None, *sorted(ROLE_PERMISSIONS)]
    minted = {role: tokens.mint(f"user-{role}", [role]) for role in roles if role is not None}
    entries = with_head(POLICY)
    assert {e.service for e in entries} == set(upstreams)

    mismatches: list[str] = []
    should_reach: dict[str, list[str]] = {name: [] for name in upstreams}
    async with stack.client() as client:
        for entry in entries:
            path = concrete(entry.path)
            for role in roles:
                headers = {} if role is None else {"Authorization": f"Bearer {minted[role]}"}
                body = b"{}" if entry.method in ("POST", "PUT") else None
                if body is not None:
                    headers["Content-Type"] = "application/json"
                seen = upstreams[entry.service].proxied
                before = len(seen)
                response = await client.request(entry.method, path, headers=headers, content=body)
                want = expected(entry, role)
                if want == FORWARDED:
                    should_reach[entry.service].append(f"{entry.method} {path}")
                if seen[before:] == [f"{entry.method} {path}"] and response.status_code == 200:
                    got = FORWARDED
                else:
                    got = str(response.status_code)
                    if got == want and entry.method != "HEAD":  # HEAD answers have no body
                        slug = "unauthenticated" if want == "401" else "forbidden"
                        if response.json()["type"] != problem_type(slug):
                            got += " (wrong problem)"
                    if got == want == "401" and "www-authenticate" not in response.headers:
                        got += " (no challenge)"
                if got != want:
                    mismatches.append(f"{entry.method} {path} as {role}: {got}, expected {want}")

    assert mismatches == []
    # The services saw exactly the allowed requests, in order, and nothing else.
    for name, upstream in upstreams.items():
        assert upstream.proxied == should_reach[name], name
    # Sanity: the matrix exercises every outcome.
    outcomes = {expected(e, r) for e in entries for r in roles}
    assert outcomes == {FORWARDED, "401", "403"}
