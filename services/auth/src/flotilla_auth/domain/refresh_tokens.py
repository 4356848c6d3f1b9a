"""Refresh tokens: opaque, single use, rotated, grouped in families.

A family starts at a password login; each refresh spends one token and issues its successor
in the same family. Presenting a spent token again means two parties hold the family (one
of them stole it), so the whole family is revoked (OAuth 2.0 Security BCP, section 4.14).
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

__all__ = ["RefreshToken", "RefreshTokenState", "hash_refresh_token", "new_refresh_token"]

# Longer than anything we issue (43 characters), short enough to reject junk before hashing.
MAX_REFRESH_TOKEN_LENGTH = 512


class RefreshTokenState(enum.Enum):
    USABLE = "usable"
    SPENT = "spent"
    EXPIRED = "expired"
    REVOKED = "revoked"


def hash_refresh_token(token: str) -> str:
    """What the database keeps: a leaked table must not hand out usable tokens.

    A fast hash is enough because the token has 256 bits of entropy; nothing to brute force.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def new_refresh_token() -> tuple[str, str]:
    """(the token for the client, its hash for the database)."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


@dataclass(frozen=True, slots=True)
class RefreshToken:
    id: str
    family_id: str
    user_id: str
    token_hash: str
    scope: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def issue(
        cls,
        *,
        user_id: str,
        scope: tuple[str, ...],
        now: datetime,
        ttl_s: int,
        family_id: str | None = None,
    ) -> tuple[str, RefreshToken]:
        """A new token, in a new family unless `family_id` continues one."""
        token, token_hash = new_refresh_token()
        record = cls(
            id=str(uuid.uuid4()),
            family_id=family_id or str(uuid.uuid4()),
            user_id=user_id,
            token_hash=token_hash,
            scope=scope,
            issued_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
        return token, record

    def state(self, now: datetime) -> RefreshTokenState:
        # Order matters: a revoked family stays dead, and a spent token is reuse even after
        # it expired (the thief may still hold its live successor).
        if self.revoked_at is not None:
            return RefreshTokenState.REVOKED
        if self.used_at is not None:
            return RefreshTokenState.SPENT
        if now >= self.expires_at:
            return RefreshTokenState.EXPIRED
        return RefreshTokenState.USABLE

    def successor(self, *, now: datetime, ttl_s: int) -> tuple[str, RefreshToken]:
        """The token that replaces this one: same family, same scope, a fresh lifetime."""
        return RefreshToken.issue(
            user_id=self.user_id,
            scope=self.scope,
            now=now,
            ttl_s=ttl_s,
            family_id=self.family_id,
        )

    def spent(self, at: datetime) -> RefreshToken:
        return replace(self, used_at=at)

    def revoked(self, at: datetime) -> RefreshToken:
        return self if self.revoked_at is not None else replace(self, revoked_at=at)
