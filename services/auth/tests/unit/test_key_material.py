"""Ed25519 keys sealed at rest with the key-encryption key."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flotilla_auth.adapters.key_material import Ed25519KeyMaterial
from flotilla_auth.domain.signing_keys import KeyStatus, jwk_thumbprint
from flotilla_auth.service_layer.errors import SigningKeyUnreadable

from .fakes import T0


def test_generated_key_is_a_staged_ed25519_key_with_a_thumbprint_kid() -> None:
    key = Ed25519KeyMaterial(b"kek").generate(now=T0)

    assert key.algorithm == "EdDSA"
    assert key.status is KeyStatus.NEXT
    assert key.created_at == T0
    assert key.public_jwk["kty"] == "OKP"
    assert key.public_jwk["crv"] == "Ed25519"
    assert set(key.public_jwk) == {"kty", "crv", "x"}
    assert key.kid == jwk_thumbprint(key.public_jwk)


def test_private_key_is_stored_encrypted_and_opens_with_the_same_kek() -> None:
    material = Ed25519KeyMaterial(b"kek")
    key = material.generate(now=T0)

    assert "ENCRYPTED" in key.sealed_private_key.splitlines()[0]  # PKCS#8, sealed
    assert material.signer_for(key).kid == key.kid
    assert "sealed_private_key" not in repr(key)


def test_wrong_kek_is_refused_clearly() -> None:
    key = Ed25519KeyMaterial(b"kek").generate(now=T0)
    with pytest.raises(SigningKeyUnreadable, match="key-encryption key"):
        Ed25519KeyMaterial(b"another kek").signer_for(key)


def test_a_private_key_that_does_not_match_its_public_half_is_refused() -> None:
    material = Ed25519KeyMaterial(b"kek")
    key, other = material.generate(now=T0), material.generate(now=T0)
    with pytest.raises(SigningKeyUnreadable, match="does not match"):
        material.signer_for(replace(key, sealed_private_key=other.sealed_private_key))


def test_empty_kek_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        Ed25519KeyMaterial(b"")
