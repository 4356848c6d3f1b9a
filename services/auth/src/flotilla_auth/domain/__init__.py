"""Pure rules of the identity service: users, scopes, tokens, signing keys.

Nothing here does I/O or imports a framework or the database.
"""

from flotilla_auth.domain.access_tokens import AccessTokenClaims
from flotilla_auth.domain.refresh_tokens import (
    RefreshToken,
    RefreshTokenState,
    hash_refresh_token,
    new_refresh_token,
)
from flotilla_auth.domain.scopes import format_scope, parse_scope
from flotilla_auth.domain.signing_keys import KeyStatus, SigningKey, jwk_thumbprint
from flotilla_auth.domain.token_policy import (
    CLOCK_SKEW_S,
    MAX_ACCESS_TOKEN_TTL_S,
    MIN_ACCESS_TOKEN_TTL_S,
    TokenPolicy,
)
from flotilla_auth.domain.usernames import is_valid_username, normalise_username
from flotilla_auth.domain.users import User

__all__ = [
    "CLOCK_SKEW_S",
    "MAX_ACCESS_TOKEN_TTL_S",
    "MIN_ACCESS_TOKEN_TTL_S",
    "AccessTokenClaims",
    "KeyStatus",
    "RefreshToken",
    "RefreshTokenState",
    "SigningKey",
    "TokenPolicy",
    "User",
    "format_scope",
    "hash_refresh_token",
    "is_valid_username",
    "jwk_thumbprint",
    "new_refresh_token",
    "normalise_username",
    "parse_scope",
]
