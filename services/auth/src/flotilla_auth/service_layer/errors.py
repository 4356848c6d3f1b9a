"""The one exception tree of the auth service; `entrypoints.http` maps it to problems.

The OAuth errors carry the RFC 6749 error code, so the edge can tell OAuth clients in
their own terms what went wrong.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidUserData",
    "OAuthError",
    "SigningKeyUnavailable",
    "SigningKeyUnreadable",
    "StorageConflict",
    "UnknownSubject",
    "UnsupportedGrantType",
]


class AuthError(Exception):
    """Base of every error the auth service raises on purpose."""


class OAuthError(AuthError):
    """An RFC 6749 section 5.2 error of the token endpoint."""

    code = "invalid_request"


class InvalidRequest(OAuthError):
    """A parameter is missing, repeated or malformed."""

    code = "invalid_request"


class InvalidGrant(OAuthError):
    """Wrong credentials, unknown or disabled user, or a bad refresh token.

    One class and one message for all of them, so a caller cannot learn which usernames
    exist or why a token was refused.
    """

    code = "invalid_grant"

    def __init__(self) -> None:
        super().__init__("The credentials or the refresh token are invalid, expired or revoked.")


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"


class InvalidScope(OAuthError):
    code = "invalid_scope"


class UnknownSubject(AuthError):
    """A valid access token names a user who no longer exists or may not sign in."""


class InvalidUserData(AuthError):
    """A user to create or update breaks a rule (unknown role, bad username, ...)."""


class SigningKeyUnavailable(AuthError):
    """No active signing key is loaded yet; tokens cannot be issued."""


class SigningKeyUnreadable(AuthError):
    """The active key cannot be opened: the key-encryption key is not the one it was sealed
    with, or the stored key is damaged."""


class StorageConflict(AuthError):
    """A concurrent writer got there first (a unique constraint fired); re-read and retry."""
