"""The keys that sign access tokens, as the rest of the world sees them (JWKs).

The private half travels with the record only in sealed (encrypted) form; opening it is the
adapters' business.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flotilla_auth.domain.token_policy import CLOCK_SKEW_S, MAX_ACCESS_TOKEN_TTL_S

__all__ = ["KeyStatus", "SigningKey", "jwk_thumbprint"]

# RFC 7638 section 3.2: the members that identify a key, per key type.
_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


def jwk_thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url): a `kid` derived from the key itself."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps(
        {name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    public_jwk: Mapping[str, str]
    sealed_private_key: str = field(repr=False)
    created_at: datetime
    status: KeyStatus = KeyStatus.ACTIVE
    retired_at: datetime | None = None

    def is_published(self, now: datetime) -> bool:
        """Active keys, and retired ones until every token they signed has expired."""
        if self.status is KeyStatus.ACTIVE:
            return True
        if self.retired_at is None:
            return False
        grace = timedelta(seconds=MAX_ACCESS_TOKEN_TTL_S + CLOCK_SKEW_S)
        return now < self.retired_at + grace

    def jwk(self) -> dict[str, str]:
        """The public key as published in the JWKS."""
        return {**self.public_jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}
