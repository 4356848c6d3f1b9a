"""Lifetimes and names that every issued token carries."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CLOCK_SKEW_S",
    "MAX_ACCESS_TOKEN_TTL_S",
    "MIN_ACCESS_TOKEN_TTL_S",
    "REVOCATION_WINDOW_S",
    "TokenPolicy",
]

# Access tokens are checked without asking us, so a stolen one is useful until it expires
# (or until verifiers learn that its session was revoked): the lifetime is capped. The floor
# keeps the refresh traffic of every client reasonable.
MIN_ACCESS_TOKEN_TTL_S = 300
MAX_ACCESS_TOKEN_TTL_S = 900
# Verifiers accept this much clock difference (the kit allows 30 s); a retired key stays
# published this much longer than the longest-lived token it can have signed.
CLOCK_SKEW_S = 60
# A revoked session stays on the published revocation list this long: past it, every access
# token of the session has expired anyway, whatever TTL it was issued with.
REVOCATION_WINDOW_S = MAX_ACCESS_TOKEN_TTL_S + CLOCK_SKEW_S


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    issuer: str
    audience: str
    access_token_ttl_s: int
    refresh_token_ttl_s: int
