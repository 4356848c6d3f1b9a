"""Services that sign in as themselves (OAuth 2.0 client credentials, RFC 7523 assertions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["ASSERTION_LEEWAY_S", "ASSERTION_MAX_LIFETIME_S", "VerifiedAssertion"]

# A client assertion may not be valid for longer than this from now: its `jti` is remembered
# until it expires, and a short life keeps that memory (and a stolen assertion) small.
ASSERTION_MAX_LIFETIME_S = 300
# Clock difference tolerated between a service and us; an assertion's `jti` is remembered
# until its `exp` plus this, the last moment it could be accepted.
ASSERTION_LEEWAY_S = 30


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    """A client assertion whose signature, certificate and claims all checked out."""

    client_id: str  # the certificate's subject CN, equal to the assertion's iss and sub
    jti: str
    expires_at: datetime
    certificate_serial: str
