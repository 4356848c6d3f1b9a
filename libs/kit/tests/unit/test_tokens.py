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
    principal = await tokens.verifier().verify(tokens.mint("ada", ["admin"], scope="a b"))
    assert isinstance(principal, Principal)
    assert principal.subject == "ada"
    assert principal.roles == {"admin"}
    assert principal.scopes == {"a", "b"}
    assert principal.can("users:admin")
    assert not (await tokens.verifier().verify(tokens.mint("al"))).can("users:admin")


async def test_verified_tokens_are_cached_until_they_expire(tokens: TokenMinter) -> None:
    verifier = tokens.verifier()
    token = tokens.mint("alice")
    first = await verifier.verify(token)
    verifier.jwks.load({"keys": []})  # the key is gone: only the cache can answer now
    assert await verifier.verify(token) is first
    with pytest.raises(TokenError):
        await verifier.verify(tokens.mint("alice"))  # a new token needs the key


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
