"""Pure rules of the identity service: users, passwords, scopes, tokens, signing keys,
login protection, audit events.

Nothing here does I/O or imports a framework or the database.
"""

from flotilla_auth.domain.access_tokens import SERVICE_SUBJECT_PREFIX, AccessTokenClaims
from flotilla_auth.domain.audit_events import AuditAction, Outcome
from flotilla_auth.domain.login_protection import (
    FailureCounter,
    LoginProtection,
    account_key,
    ip_key,
)
from flotilla_auth.domain.password_policy import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    PasswordPolicy,
    PasswordRule,
)
from flotilla_auth.domain.refresh_tokens import (
    RefreshToken,
    RefreshTokenState,
    hash_refresh_token,
    new_refresh_token,
)
from flotilla_auth.domain.scopes import format_scope, parse_scope
from flotilla_auth.domain.service_clients import (
    ASSERTION_LEEWAY_S,
    ASSERTION_MAX_LIFETIME_S,
    VerifiedAssertion,
)
from flotilla_auth.domain.signing_keys import KeySchedule, KeyStatus, SigningKey, jwk_thumbprint
from flotilla_auth.domain.token_policy import (
    CLOCK_SKEW_S,
    MAX_ACCESS_TOKEN_TTL_S,
    MIN_ACCESS_TOKEN_TTL_S,
    REVOCATION_WINDOW_S,
    TokenPolicy,
)
from flotilla_auth.domain.usernames import is_valid_username, normalise_username
from flotilla_auth.domain.users import User

__all__ = [
    "ASSERTION_LEEWAY_S",
    "ASSERTION_MAX_LIFETIME_S",
    "CLOCK_SKEW_S",
    "MAX_ACCESS_TOKEN_TTL_S",
    "MAX_PASSWORD_LENGTH",
    "MIN_ACCESS_TOKEN_TTL_S",
    "MIN_PASSWORD_LENGTH",
    "REVOCATION_WINDOW_S",
    "SERVICE_SUBJECT_PREFIX",
    "AccessTokenClaims",
    "AuditAction",
    "FailureCounter",
    "KeySchedule",
    "KeyStatus",
    "LoginProtection",
    "Outcome",
    "PasswordPolicy",
    "PasswordRule",
    "RefreshToken",
    "RefreshTokenState",
    "SigningKey",
    "TokenPolicy",
    "User",
    "VerifiedAssertion",
    "account_key",
    "format_scope",
    "hash_refresh_token",
    "ip_key",
    "is_valid_username",
    "jwk_thumbprint",
    "new_refresh_token",
    "normalise_username",
    "parse_scope",
]
