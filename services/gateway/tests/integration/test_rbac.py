"""Every policy entry against every role (and no token): what the gateway lets through,
and, for the sharded ledger, to which shard."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import httpx

from flotilla_gateway.routes import (
    AUTHENTICATED,
    GATEWAY,
    POLICY,
    PUBLIC,
    SHARD_BY_ACCOUNT_ID,
    SHARD_BY_NUMBER,
    SHARD_BY_OWNER,
    RoutePolicy,
)
from flotilla_kit.problems import problem_type
from flotilla_kit.rbac import ROLE_PERMISSIONS
from flotilla_kit.sharding import home_shard
from flotilla_kit.testing import TokenMinter

from .harness import Stack, Upstream

FORWARDED = "forwarded"
SHARDS = 2
ACCOUNT_ID = "acc_1_" + "7f" * 16  # on shard 1
_PARAMETER = re.compile(r"\{(\w+)\}")


def concrete(path: str) -> str:
    """A request path for a template: each `{name}` becomes a value of its own."""
    path = path.replace("{account_id}", ACCOUNT_ID).replace("{shard}", "1")
    return _PARAMETER.sub(lambda m: f"{m.group(1).replace('_', '-')}-7", path)


def _subjects() -> dict[str, str]:
    """A subject per role, their home shards alternating, so both shards are exercised."""
    return {
        role: next(
            f"{role}-{n}" for n in range(1000) if home_shard(f"{role}-{n}", SHARDS) == i % SHARDS
        )
        for i, role in enumerate(sorted(ROLE_PERMISSIONS))
    }


SUBJECTS = _subjects()


def subject(role: str) -> str:
    return SUBJECTS[role]


def expected(entry: RoutePolicy, role: str | None) -> str:
    if entry.access == PUBLIC:
        return FORWARDED
    if role is None:
        return "401"
    if entry.access == AUTHENTICATED or entry.access in ROLE_PERMISSIONS[role]:
        return FORWARDED
    return "403"


def expected_shard(entry: RoutePolicy, role: str | None) -> int | None:
    if entry.shard_by in (SHARD_BY_ACCOUNT_ID, SHARD_BY_NUMBER):
        return 1
    if entry.shard_by == SHARD_BY_OWNER and role is not None:
        return home_shard(subject(role), SHARDS)
    return None


def with_head(policy: tuple[RoutePolicy, ...]) -> list[RoutePolicy]:
    """The policy as the gateway applies it: every GET entry answers HEAD too."""
    entries = list(policy)
    for entry in policy:
        if entry.method == "GET":
            entries.append(dataclasses.replace(entry, method="HEAD"))
    return entries


def outcome(
    response: httpx.Response,
    new: Counter[tuple[str, int | None]],
    reached: Counter[tuple[str, int | None]],
    want: str,
    *,
    head: bool,
) -> str:
    """What happened to one request, in the terms of `expected`."""
    if response.status_code == 200:
        return FORWARDED if new == reached else f"forwarded as {dict(new)}"
    got = str(response.status_code)
    if got == want and not head:  # HEAD answers have no body
        slug = "unauthenticated" if want == "401" else "forbidden"
        if response.json()["type"] != problem_type(slug):
            got += " (wrong problem)"
    if got == want == "401" and "www-authenticate" not in response.headers:
        got += " (no challenge)"
    return got


async def test_the_rbac_matrix(stack: Stack, tokens: TokenMinter) -> None:
    upstreams: dict[str, list[Upstream]] = {
        "auth": [await stack.upstream("auth")],
        "accounts": [await stack.upstream("accounts", shard=n) for n in range(SHARDS)],
        "payments": [await stack.upstream("payments")],
        "inventory": [await stack.upstream("inventory")],
        "orders": [await stack.upstream("orders")],
        "billing": [await stack.upstream("billing")],
        "web": [await stack.upstream("web")],
    }
    # Hundreds of requests from one address in a moment: the matrix is about access, not
    # rate limits (tests of their own).
    await stack.start_gateway(rate_limit_enabled=False)
    roles: list[str | None] = [None, *sorted(ROLE_PERMISSIONS)]
    minted = {role: tokens.mint(subject(role), [role]) for role in roles if role is not None}
    entries = with_head(POLICY)
    # The gateway's own operations are checked the same way, then answered by it.
    assert {e.service for e in entries} == {*upstreams, GATEWAY}

    def proxied(service: str) -> Counter[tuple[str, int | None]]:
        """What the service's instances were sent: (request, shard of the instance)."""
        return Counter((r, u.shard) for u in upstreams.get(service, ()) for r in u.proxied)

    mismatches: list[str] = []
    should_reach: dict[str, Counter[tuple[str, int | None]]] = {
        name: Counter() for name in upstreams
    }
    async with stack.client() as client:
        for entry in entries:
            path = concrete(entry.path)
            for role in roles:
                headers = {} if role is None else {"Authorization": f"Bearer {minted[role]}"}
                body = b"{}" if entry.method in ("POST", "PUT", "PATCH") else None
                if body is not None:
                    headers["Content-Type"] = "application/json"
                before = proxied(entry.service)
                response = await client.request(entry.method, path, headers=headers, content=body)
                want = expected(entry, role)
                line = f"{entry.method} {path}"
                reached = Counter([(line, expected_shard(entry, role))])
                if want == FORWARDED and entry.service != GATEWAY:
                    should_reach[entry.service] += reached
                # The gateway's own operations reach no service.
                new = proxied(entry.service) - before
                if entry.service == GATEWAY:
                    reached = Counter()
                got = outcome(response, new, reached, want, head=entry.method == "HEAD")
                if got != want:
                    mismatches.append(f"{line} as {role}: {got}, expected {want}")

    assert mismatches == []
    # The services saw exactly the allowed requests, on the right shard, and nothing else.
    for name in upstreams:
        assert proxied(name) == should_reach[name], name
    # Sanity: the matrix exercises every outcome, and owners on both shards.
    outcomes = {expected(e, r) for e in entries for r in roles}
    assert outcomes == {FORWARDED, "401", "403"}
    owner_shards = {
        expected_shard(e, r)
        for e in entries
        for r in roles
        if e.shard_by == SHARD_BY_OWNER and expected(e, r) == FORWARDED
    }
    assert owner_shards == {0, 1}
