"""Access tokens: the claims, the JWT header, and that the kit's verifier accepts them."""

from __future__ import annotations

from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flotilla_auth.adapters.key_material import Ed25519KeyMaterial
from flotilla_auth.adapters.token_signer import JwtSigner
from flotilla_auth.domain.access_tokens import AccessTokenClaims
from flotilla_auth.domain.signing_keys import SigningKey
from flotilla_auth.domain.token_policy import TokenPolicy
from flotilla_auth.domain.users import User
from flotilla_kit.tokens import JwksCache, TokenError, TokenVerifier

from .fakes import POLICY, T0

USER = User(
    id="3f1c9a4e-0000-4000-8000-000000000001",
    username="alice",
    password_hash="unused",
    roles=("support", "customer"),
    created_at=T0,
)


@pytest.fixture(scope="module")
def key_material() -> Ed25519KeyMaterial:
    return Ed25519KeyMaterial(b"unit-test key-encryption key")


@pytest.fixture(scope="module")
def key(key_material: Ed25519KeyMaterial) -> SigningKey:
    return key_material.generate(now=T0)


def test_claims_carry_everything_a_verifier_requires() -> None:
    claims = AccessTokenClaims.for_user(USER, scope=("accounts:read",), policy=POLICY, now=T0)
    body = claims.to_jwt()

    issued = int(T0.timestamp())
    assert body == {
        "iss": "flotilla-auth",
        "aud": "flotilla",
        "sub": USER.id,
        "iat": issued,
        "nbf": issued,
        "exp": issued + 600,
        "jti": claims.token_id,
        "roles": ["customer", "support"],
        "scope": "accounts:read",
    }
    assert claims.expires_in == 600


def test_each_token_gets_its_own_id() -> None:
    ids = {
        AccessTokenClaims.for_user(USER, scope=(), policy=POLICY, now=T0).token_id
        for _ in range(50)
    }
    assert len(ids) == 50
    assert all(len(token_id) >= 16 for token_id in ids)


def test_signed_token_header_names_alg_typ_and_kid(
    key_material: Ed25519KeyMaterial, key: SigningKey
) -> None:
    signer = key_material.signer_for(key)
    token = signer.sign(AccessTokenClaims.for_user(USER, scope=(), policy=POLICY, now=T0).to_jwt())

    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": "at+jwt", "kid": key.kid}
    public = jwt.PyJWK(key.jwk())
    # T0 is a fixed instant, not now: check the signature, not the times.
    claims = jwt.decode(
        token,
        public,
        algorithms=["EdDSA"],
        audience="flotilla",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["scope"] == ""
    assert set(claims) == {"iss", "aud", "sub", "exp", "iat", "nbf", "jti", "roles", "scope"}


async def test_kit_verifier_accepts_our_tokens(
    key_material: Ed25519KeyMaterial, key: SigningKey
) -> None:
    policy = TokenPolicy("flotilla-auth", "flotilla", 300, 3600)
    now = datetime.now(UTC)
    claims = AccessTokenClaims.for_user(USER, scope=("accounts:read",), policy=policy, now=now)
    token = key_material.signer_for(key).sign(claims.to_jwt())
    cache = JwksCache([])
    cache.load({"keys": [key.jwk()]})
    verifier = TokenVerifier(cache, issuer="flotilla-auth", audience="flotilla")

    principal = await verifier.verify(token)

    assert principal.subject == USER.id
    assert principal.roles == frozenset({"customer", "support"})
    assert principal.scopes == frozenset({"accounts:read"})
    assert principal.token_id == claims.token_id
    assert principal.can("accounts:read")
    assert not principal.can("users:read")  # the roles grant it; the narrowed scope does not


async def test_kit_verifier_refuses_a_token_signed_by_another_key(key: SigningKey) -> None:
    impostor = JwtSigner(kid=key.kid, private_key=Ed25519PrivateKey.generate())
    token = impostor.sign(
        AccessTokenClaims.for_user(USER, scope=(), policy=POLICY, now=datetime.now(UTC)).to_jwt()
    )
    cache = JwksCache([])
    cache.load({"keys": [key.jwk()]})
    verifier = TokenVerifier(cache, issuer="flotilla-auth", audience="flotilla")
    with pytest.raises(TokenError):
        await verifier.verify(token)


def test_a_session_id_becomes_the_sid_claim() -> None:
    claims = AccessTokenClaims.for_user(
        USER, scope=(), policy=POLICY, now=T0, session_id="family-1"
    ).to_jwt()
    assert claims["sid"] == "family-1"


def test_service_claims_name_the_service_and_its_role_only() -> None:
    claims = AccessTokenClaims.for_service(
        "payments", role="service:payments", policy=POLICY, now=T0
    ).to_jwt()
    assert claims["sub"] == "service:payments"
    assert claims["roles"] == ["service:payments"]
    assert claims["scope"] == ""
    assert "sid" not in claims
