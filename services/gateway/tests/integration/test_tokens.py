"""Forged and unacceptable access tokens against the gateway, and revoked sessions.

Every attack must get a 401 problem with a challenge, for the reason it was built to
trigger, and must never reach the service behind the route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import structlog

from flotilla_kit.problems import problem_type
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths

from .forged_tokens import Forge, attacks
from .harness import Stack

ROUTE = "/api/v1/accounts/acc-1"  # needs `accounts:read`, which a customer has


@pytest.fixture
def forge() -> Forge:
    return Forge()


@pytest.fixture
async def forged_stack(
    tmp_path: Path, dev_pki: Callable[[str], CertificatePaths], forge: Forge
) -> AsyncIterator[Stack]:
    """A stack whose fake auth service publishes the forge's trusted key."""
    built = Stack(tmp_path, dev_pki, forge.trusted.jwks)
    try:
        yield built
    finally:
        await built.close()


async def test_the_jwt_attack_matrix(forged_stack: Stack, forge: Forge) -> None:
    stack = forged_stack
    auth = await stack.upstream("auth")
    auth.revoked = {"session-revoked"}
    accounts = await stack.upstream("accounts")
    # Serves the attacker's key; not in the topology: nobody should ever ask it.
    evil = await stack.upstream("evil", in_topology=False)
    await stack.start_gateway()
    matrix = attacks(jku_url=f"{evil.url}/.well-known/jwks.json", revoked_session="session-revoked")
    mismatches: list[str] = []
    async with stack.client() as client:
        # The forge makes tokens the gateway accepts when nothing is wrong with them.
        control = await client.get(ROUTE, headers={"Authorization": f"Bearer {forge.token()}"})
        assert control.status_code == 200
        assert accounts.proxied == [f"GET {ROUTE}"]

        for attack in matrix:
            token = attack.make(forge)
            with structlog.testing.capture_logs() as logs:
                response = await client.get(ROUTE, headers={"Authorization": f"Bearer {token}"})
            reasons = [e["reason"] for e in logs if e["event"] == "token rejected"]
            problem = response.json() if response.content else {}
            if (
                response.status_code != 401
                or response.headers.get("content-type") != "application/problem+json"
                or response.headers.get("www-authenticate") != 'Bearer realm="flotilla"'
                or problem.get("type") != problem_type("unauthenticated")
            ):
                mismatches.append(f"{attack.name}: {response.status_code} {problem}")
            elif len(reasons) != 1 or attack.reason.lower() not in reasons[0].lower():
                mismatches.append(f"{attack.name}: refused for {reasons}, not {attack.reason!r}")

    assert mismatches == []
    assert accounts.proxied == [f"GET {ROUTE}"]  # the control request only
    assert evil.clients == set()  # `jku` was not followed
    assert auth.proxied == []


async def test_a_revoked_session_is_refused_even_when_its_token_is_known(
    stack: Stack, tokens: TokenMinter
) -> None:
    auth = await stack.upstream("auth")
    accounts = await stack.upstream("accounts")
    await stack.start_gateway()
    token = tokens.mint("user-1", ["customer"], sid="s-1")
    other = tokens.mint("user-2", ["customer"], sid="s-2")
    headers = {"Authorization": f"Bearer {token}"}
    async with stack.client() as client:
        assert (await client.get(ROUTE, headers=headers)).status_code == 200
        assert stack.authenticator.verifier.cached(token) is not None  # on the hot path now

        auth.revoked = {"s-1"}
        await stack.authenticator.refresh()  # what the background loop does every few seconds
        refused = await client.get(ROUTE, headers=headers)
        still_fine = await client.get(ROUTE, headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="flotilla"'
    assert still_fine.status_code == 200
    assert accounts.proxied == [f"GET {ROUTE}"] * 2


async def test_revocations_follow_the_auth_instances_in_the_topology(
    stack: Stack, tokens: TokenMinter
) -> None:
    old = await stack.upstream("auth")
    old.revoked = {"s-old"}
    accounts = await stack.upstream("accounts")
    await stack.start_gateway()
    revoked_early = {"Authorization": f"Bearer {tokens.mint(sid='s-old')}"}
    revoked_later = {"Authorization": f"Bearer {tokens.mint(sid='s-new')}"}
    async with stack.client() as client:
        assert (await client.get(ROUTE, headers=revoked_early)).status_code == 401
        assert (await client.get(ROUTE, headers=revoked_later)).status_code == 200

        # The auth instance is replaced by one that is still starting.
        new = await stack.upstream("auth", in_topology=False)
        new.revoked = {"s-old", "s-new"}
        new.revocations_status = 503
        stack.write_topology([new, accounts])
        await stack.wait_until(
            lambda: {i.name for i in stack.registry.instances()} == {new.name, accounts.name}
        )
        await stack.authenticator.refresh()
        # The old list stays in force until the new instance answers.
        assert (await client.get(ROUTE, headers=revoked_early)).status_code == 401

        new.revocations_status = 200
        await stack.authenticator.refresh()
        assert (await client.get(ROUTE, headers=revoked_later)).status_code == 401
        assert (await client.get(ROUTE, headers=revoked_early)).status_code == 401
    assert accounts.proxied == [f"GET {ROUTE}"]


async def test_configured_revocation_urls_are_used_instead_of_the_topology(
    stack: Stack, tokens: TokenMinter
) -> None:
    auth = await stack.upstream("auth")
    elsewhere = await stack.upstream("auth", "auth-elsewhere", in_topology=False)
    elsewhere.revoked = {"s-9"}
    auth.revoked = {"s-1"}  # not consulted
    await stack.upstream("accounts")
    await stack.start_gateway(revocation_urls=[f"{elsewhere.url}/internal/v1/revocations"])
    async with stack.client() as client:
        nine = await client.get(
            ROUTE, headers={"Authorization": f"Bearer {tokens.mint(sid='s-9')}"}
        )
        one = await client.get(ROUTE, headers={"Authorization": f"Bearer {tokens.mint(sid='s-1')}"})
    assert nine.status_code == 401
    assert one.status_code == 200
