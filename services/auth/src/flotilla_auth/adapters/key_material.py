"""Ed25519 signing keys: generated here, sealed at rest with the key-encryption key."""

from __future__ import annotations

import base64
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flotilla_auth.adapters.token_signer import JwtSigner
from flotilla_auth.domain.signing_keys import KeyStatus, SigningKey, jwk_thumbprint
from flotilla_auth.service_layer.errors import SigningKeyUnreadable

__all__ = ["Ed25519KeyMaterial"]

ALGORITHM = "EdDSA"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Ed25519KeyMaterial:
    """Makes keys and opens them. The private key is stored as an encrypted PKCS#8 PEM, so
    a copy of the database alone cannot mint tokens."""

    def __init__(self, key_encryption_key: bytes) -> None:
        if not key_encryption_key:
            raise ValueError("the key-encryption key must not be empty")
        self._kek = key_encryption_key

    def generate(self, *, now: datetime) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        raw_public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        public_jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw_public)}
        sealed = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._kek),
        )
        return SigningKey(
            kid=jwk_thumbprint(public_jwk),
            algorithm=ALGORITHM,
            public_jwk=public_jwk,
            sealed_private_key=sealed.decode("ascii"),
            created_at=now,
            status=KeyStatus.NEXT,
        )

    def signer_for(self, key: SigningKey) -> JwtSigner:
        try:
            private = serialization.load_pem_private_key(
                key.sealed_private_key.encode("ascii"), password=self._kek
            )
        except (ValueError, TypeError) as exc:
            raise SigningKeyUnreadable(
                f"cannot open signing key {key.kid!r}: wrong key-encryption key or damaged key"
            ) from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyUnreadable(f"signing key {key.kid!r} is not an Ed25519 key")
        raw_public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        if _b64url(raw_public) != key.public_jwk.get("x"):
            # Signing with a key whose public half is not what we publish would make every
            # token we issue unverifiable.
            raise SigningKeyUnreadable(f"signing key {key.kid!r} does not match its public key")
        return JwtSigner(kid=key.kid, private_key=private)
