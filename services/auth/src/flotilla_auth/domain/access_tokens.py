"""The claims of an access token (a JWT, RFC 9068 profile), before it is signed."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flotilla_auth.domain.scopes import format_scope
from flotilla_auth.domain.token_policy import TokenPolicy
from flotilla_auth.domain.users import User

__all__ = ["SERVICE_SUBJECT_PREFIX", "AccessTokenClaims"]

# A service's tokens name it as `service:<name>`; user ids are UUIDs, so the two never meet.
SERVICE_SUBJECT_PREFIX = "service:"


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
    # The login session (refresh-token family): verifiers refuse the token once the session
    # is on the revocation list. Services have no session.
    session_id: str | None = None

    @classmethod
    def for_user(
        cls,
        user: User,
        *,
        scope: Iterable[str],
        policy: TokenPolicy,
        now: datetime,
        session_id: str | None = None,
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
            session_id=session_id,
        )

    @classmethod
    def for_service(
        cls, name: str, *, role: str, policy: TokenPolicy, now: datetime
    ) -> AccessTokenClaims:
        return cls(
            issuer=policy.issuer,
            audience=policy.audience,
            subject=SERVICE_SUBJECT_PREFIX + name,
            issued_at=now,
            expires_at=now + timedelta(seconds=policy.access_token_ttl_s),
            token_id=secrets.token_urlsafe(16),
            roles=(role,),
            scope=(),
        )

    @property
    def expires_in(self) -> int:
        return int((self.expires_at - self.issued_at).total_seconds())

    def to_jwt(self) -> dict[str, object]:
        issued_at = int(self.issued_at.timestamp())
        claims: dict[str, object] = {
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
        if self.session_id is not None:
            claims["sid"] = self.session_id
        return claims
