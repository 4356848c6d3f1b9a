"""Signs access tokens as JWTs (PyJWT, EdDSA)."""

from __future__ import annotations

from collections.abc import Mapping

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["ACCESS_TOKEN_TYPE", "JwtSigner"]

# RFC 9068: the explicit type keeps an access token from being accepted as another kind of
# JWT (an ID token, say) by a verifier that checks it, as the kit's does.
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret


class JwtSigner:
    def __init__(self, *, kid: str, private_key: Ed25519PrivateKey) -> None:
        self._kid = kid
        self._private_key = private_key

    @property
    def kid(self) -> str:
        return self._kid

    def sign(self, claims: Mapping[str, object]) -> str:
        return jwt.encode(
            dict(claims),
            self._private_key,
            algorithm="EdDSA",
            headers={"kid": self._kid, "typ": ACCESS_TOKEN_TYPE},
        )
