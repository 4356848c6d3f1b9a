"""The claims of an access token (a JWT, RFC 9068 profile), before it is signed."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flotilla_auth.domain.scopes import format_scope
from flotilla_auth.domain.token_policy import TokenPolicy
from flotilla_auth.domain.users import User

__all__ = ["AccessTokenClaims"]


@dataclass(frozen=True, slots=True)
class AccessTokenClaims:
    issuer: str
    audience: str
    subject: str
    issued_at: datetime
    expires_at: datetime
    token_id: str
    roles: tuple[str, ...]
    scope: tuple[str, ...]

    @classmethod
    def for_user(
        cls, user: User, *, scope: Iterable[str], policy: TokenPolicy, now: datetime
    ) -> AccessTokenClaims:
        return cls(
            issuer=policy.issuer,
            audience=policy.audience,
            subject=user.id,
            issued_at=now,
            expires_at=now + timedelta(seconds=policy.access_token_ttl_s),
            # A unique id lets a verifier or an audit trail tell two tokens apart.
            token_id=secrets.token_urlsafe(16),
            roles=tuple(sorted(user.roles)),
            scope=tuple(scope),
        )

    @property
    def expires_in(self) -> int:
        return int((self.expires_at - self.issued_at).total_seconds())

    def to_jwt(self) -> dict[str, object]:
        issued_at = int(self.issued_at.timestamp())
        return {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": self.subject,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + self.expires_in,
            "jti": self.token_id,
            "roles": list(self.roles),
            "scope": format_scope(self.scope),
        }
