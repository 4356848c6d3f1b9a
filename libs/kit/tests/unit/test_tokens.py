"""The verifier against the attacks RFC 8725 lists, one case per row."""

from __future__ import annotations

import pytest

from flotilla_kit.testing import JWT_ATTACKS, REVOKED_SESSION, TokenMinter
from flotilla_kit.tokens import JwksCache, Principal, TokenError, TokenVerifier


@pytest.mark.parametrize("attack", JWT_ATTACKS, ids=list(JWT_ATTACKS))
async def test_attack_is_refused(tokens: TokenMinter, attack: str) -> None:
    verifier = tokens.verifier()
    verifier.revocations.load([REVOKED_SESSION])
    with pytest.raises(TokenError):
        await verifier.verify(JWT_ATTACKS[attack](tokens))


async def test_a_good_token_gives_the_principal_and_its_permissions(tokens: TokenMinter) -> None:
    principal = await tokens.verifier().verify(tokens.mint("ada", ["admin"]))
    assert isinstance(principal, Principal)
    assert principal.subject == "ada"
    assert principal.roles == {"admin"}
    assert principal.can("users:admin")
    assert principal.key_id == tokens.kid
    assert not (await tokens.verifier().verify(tokens.mint("al"))).can("users:admin")


async def test_verified_tokens_are_cached_until_they_expire(
    tokens: TokenMinter, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = tokens.verifier()
    checks = 0
    check = verifier._verify_uncached

    async def counting(token: str) -> Principal:
        nonlocal checks
        checks += 1
        return await check(token)

    monkeypatch.setattr(verifier, "_verify_uncached", counting)
    token = tokens.mint("alice")
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first
    assert checks == 1  # the signature was checked once
    expiring = tokens.mint("alice", ttl_s=-25)  # expired, but within the 30 s leeway
    await verifier.verify(expiring)
    verifier._leeway_s = 0
    with pytest.raises(TokenError):
        await verifier.verify(expiring)  # no longer good: not answered from the cache


async def test_cache_is_bounded(tokens: TokenMinter) -> None:
    cache = JwksCache([])
    cache.load(tokens.jwks)
    verifier = TokenVerifier(cache, issuer=tokens.issuer, audience=tokens.audience, cache_size=3)
    for n in range(10):
        await verifier.verify(tokens.mint(f"user-{n}"))
    assert len(verifier._verified) <= 3


def test_keys_that_are_not_for_signing_are_ignored(tokens: TokenMinter) -> None:
    cache = JwksCache([])
    key = tokens.jwks["keys"][0]
    cache.load({"keys": [{**key, "use": "enc"}, {**key, "kid": "no-alg", "alg": None}]})
    assert cache._keys == {}


async def test_a_revoked_session_is_refused_even_from_the_cache(tokens: TokenMinter) -> None:
    verifier = tokens.verifier()
    token = tokens.mint("alice", sid="session-1")
    assert (await verifier.verify(token)).session_id == "session-1"
    assert verifier.cached(token) is not None
    verifier.revocations.load(["session-1"])
    assert verifier.cached(token) is None
    with pytest.raises(TokenError, match="revoked"):
        await verifier.verify(token)
    other = tokens.mint("alice", sid="session-2")
    assert (await verifier.verify(other)).subject == "alice"


def test_cached_answers_only_for_tokens_verified_before(tokens: TokenMinter) -> None:
    assert tokens.verifier().cached(tokens.mint("alice")) is None


async def test_a_narrowed_scope_narrows_what_the_token_may_do(tokens: TokenMinter) -> None:
    verifier = tokens.verifier()
    narrow = await verifier.verify(tokens.mint("ada", ["admin"], scope="accounts:read"))
    assert narrow.can("accounts:read")
    assert not narrow.can("users:admin")
    # A scope the roles do not grant adds nothing.
    odd = await verifier.verify(tokens.mint("al", ["customer"], scope="users:admin"))
    assert not odd.can("users:admin")


async def test_tokens_of_a_key_that_left_the_jwks_leave_the_cache(tokens: TokenMinter) -> None:
    verifier = tokens.verifier()
    token = tokens.mint("alice")
    await verifier.verify(token)
    assert verifier.cached(token) is not None
    verifier.jwks.load({"keys": []})  # the key was withdrawn (rotation after a leak)
    assert verifier.cached(token) is None
    with pytest.raises(TokenError):
        await verifier.verify(token)
