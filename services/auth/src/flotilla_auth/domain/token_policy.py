"""Lifetimes and names that every issued token carries."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLOCK_SKEW_S", "MAX_ACCESS_TOKEN_TTL_S", "MIN_ACCESS_TOKEN_TTL_S", "TokenPolicy"]

# Access tokens cannot be revoked, so their lifetime is capped: a stolen one is useful for
# at most this long.
MIN_ACCESS_TOKEN_TTL_S = 60
MAX_ACCESS_TOKEN_TTL_S = 900
# Verifiers accept this much clock difference (the kit allows 30 s); a retired key stays
# published this much longer than the longest-lived token it can have signed.
CLOCK_SKEW_S = 60


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    issuer: str
    audience: str
    access_token_ttl_s: int
    refresh_token_ttl_s: int
