"""The verifier against the attacks RFC 8725 lists, one case per row."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flotilla_kit.testing import TokenMinter
from flotilla_kit.tokens import JwksCache, Principal, TokenError, TokenVerifier


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, object], payload: dict[str, object]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."


def _claims(tokens: TokenMinter, **override: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": tokens.issuer, "aud": tokens.audience, "sub": "alice", "iat": now,
        "exp": now + 300, "jti": "j", "roles": ["customer"],
    }  # fmt: skip
    claims.update(override)
    return claims


def _hs256_with_public_key(tokens: TokenMinter) -> str:
    public = tokens.jwks["keys"][0]["x"]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": tokens.kid}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(tokens)).encode())}"
    )
    import hashlib  # noqa: PLC0415
    import hmac  # noqa: PLC0415

    mac = hmac.new(public.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _foreign_key_same_kid(tokens: TokenMinter) -> str:
    other = Ed25519PrivateKey.generate()
    return jwt.encode(
        _claims(tokens), other, algorithm="EdDSA", headers={"kid": tokens.kid, "typ": "at+jwt"}
    )


def _tampered(tokens: TokenMinter) -> str:
    header, _, signature = tokens.mint("alice").split(".")
    forged = _b64(json.dumps(_claims(tokens, roles=["admin"])).encode())
    return f"{header}.{forged}.{signature}"


def _without(tokens: TokenMinter, claim: str) -> str:
    token = tokens.mint("alice")
    payload = jwt.decode(token, options={"verify_signature": False})
    payload.pop(claim)
    return jwt.encode(
        payload, tokens._key, algorithm="EdDSA", headers={"kid": tokens.kid, "typ": "at+jwt"}
    )


ATTACKS: dict[str, Callable[[TokenMinter], str]] = {
    "alg none": lambda t: _unsigned({"alg": "none", "typ": "at+jwt", "kid": t.kid}, _claims(t)),
    "HS256 signed with the public key": _hs256_with_public_key,
    "unknown kid": lambda t: t.mint(headers={"kid": "nobody"}),
    "key not in JWKS under a known kid": _foreign_key_same_kid,
    "tampered payload": _tampered,
    "expired": lambda t: t.mint(ttl_s=-120),
    "nbf in the future": lambda t: t.mint(nbf=int(time.time()) + 3600),
    "wrong issuer": lambda t: t.mint(iss="someone-else"),
    "wrong audience": lambda t: t.mint(aud="another-api"),
    "missing exp": lambda t: _without(t, "exp"),
    "missing sub": lambda t: _without(t, "sub"),
    "missing iat": lambda t: _without(t, "iat"),
    "typ not at+jwt": lambda t: t.mint(headers={"typ": "JWT"}),
    "jku pointing elsewhere": lambda t: t.mint(headers={"jku": "https://evil.example/jwks"}),
    "embedded jwk": lambda t: t.mint(headers={"jwk": t.jwks["keys"][0]}),
    "oversized token": lambda t: t.mint(padding="x" * 5000),
    "not a JWT at all": lambda t: "hello.world",
    "roles not a list": lambda t: t.mint(roles="admin"),
}


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
async def test_attack_is_refused(tokens: TokenMinter, attack: str) -> None:
    with pytest.raises(TokenError):
        await tokens.verifier().verify(ATTACKS[attack](tokens))


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
