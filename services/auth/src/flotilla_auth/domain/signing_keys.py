"""The keys that sign access tokens, as the rest of the world sees them (JWKs), and their
life: staged (`next`, published but not signing), `active` (signing), `retired` (published
until every token it signed has expired), then gone from the JWKS.

The private half travels with the record only in sealed (encrypted) form; opening it is the
adapters' business.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from flotilla_auth.domain.token_policy import CLOCK_SKEW_S

__all__ = ["KeySchedule", "KeyStatus", "SigningKey", "jwk_thumbprint"]

# RFC 7638 section 3.2: the members that identify a key, per key type.
_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}


class KeyStatus(enum.StrEnum):
    NEXT = "next"
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
class KeySchedule:
    """When keys move from one state to the next (seconds)."""

    # A staged key signs only after verifiers have had this long to fetch it.
    publish_delay_s: int
    # The active key gets a successor staged once it has signed this long.
    rotation_period_s: int
    # The access-token lifetime: a retired key stays published this long (plus skew).
    access_token_ttl_s: int

    @property
    def retention(self) -> timedelta:
        return timedelta(seconds=self.access_token_ttl_s + CLOCK_SKEW_S)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    public_jwk: Mapping[str, str]
    sealed_private_key: str = field(repr=False)
    # When the key was made (and, for a staged key, first published).
    created_at: datetime
    status: KeyStatus = KeyStatus.NEXT
    activated_at: datetime | None = None
    retired_at: datetime | None = None

    def activated(self, at: datetime) -> SigningKey:
        return replace(self, status=KeyStatus.ACTIVE, activated_at=at, retired_at=None)

    def retired(self, at: datetime) -> SigningKey:
        return replace(self, status=KeyStatus.RETIRED, retired_at=at)

    def activates_after(self, schedule: KeySchedule) -> datetime:
        """The earliest moment a staged key may start signing."""
        return self.created_at + timedelta(seconds=schedule.publish_delay_s)

    def is_due_for_activation(self, now: datetime, schedule: KeySchedule) -> bool:
        return self.status is KeyStatus.NEXT and now >= self.activates_after(schedule)

    def needs_successor(self, now: datetime, schedule: KeySchedule) -> bool:
        if self.status is not KeyStatus.ACTIVE:
            return False
        since = self.activated_at or self.created_at
        return now >= since + timedelta(seconds=schedule.rotation_period_s)

    def is_published(self, now: datetime, schedule: KeySchedule) -> bool:
        """Staged and active keys, and retired ones until every token they signed has
        expired (the last one was signed at `retired_at` at the latest)."""
        if self.status is not KeyStatus.RETIRED:
            return True
        if self.retired_at is None:
            return False
        return now < self.retired_at + schedule.retention

    def jwk(self) -> dict[str, str]:
        """The public key as published in the JWKS."""
        return {**self.public_jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}
