"""The one exception tree of the auth service; `entrypoints.http` maps it to problems.

The OAuth errors carry the RFC 6749 error code, so the edge can tell OAuth clients in
their own terms what went wrong.
"""

from __future__ import annotations

from flotilla_auth.domain.password_policy import PasswordRule

__all__ = [
    "AuthError",
    "CannotChangeSelf",
    "Forbidden",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidUserData",
    "OAuthError",
    "SigningKeyUnavailable",
    "SigningKeyUnreadable",
    "StorageConflict",
    "TooManyLoginAttempts",
    "UnknownRole",
    "UnknownSubject",
    "UnsupportedGrantType",
    "UserNotFound",
    "UsernameTaken",
    "WeakPassword",
]


class AuthError(Exception):
    """Base of every error the auth service raises on purpose."""


class OAuthError(AuthError):
    """An RFC 6749 section 5.2 error of the token endpoint."""

    code = "invalid_request"
    status = 400


class InvalidRequest(OAuthError):
    """A parameter is missing, repeated or malformed."""

    code = "invalid_request"


class InvalidGrant(OAuthError):
    """Wrong credentials, unknown, disabled, locked or locked-out user, or a bad refresh
    token.

    One class and one message for all of them, so a caller cannot learn which usernames
    exist, which are locked, or why a token was refused.
    """

    code = "invalid_grant"

    def __init__(self) -> None:
        super().__init__("The credentials or the refresh token are invalid, expired or revoked.")


class InvalidClient(OAuthError):
    """Client authentication failed. The reason is for the log and the audit trail only;
    the client always reads the same message."""

    code = "invalid_client"
    status = 401

    def __init__(self, reason: str, *, client_id: str | None = None) -> None:
        super().__init__("Client authentication failed.")
        self.reason = reason
        # The client the request claimed to be, once known (for the audit trail).
        self.client_id = client_id


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"


class InvalidScope(OAuthError):
    code = "invalid_scope"


class TooManyLoginAttempts(AuthError):
    """Too many failed logins from one client address; try again after `retry_after_s`."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class UnknownSubject(AuthError):
    """A valid access token names a user who no longer exists or may not sign in, or a
    session that was revoked."""


class Forbidden(AuthError):
    """The caller's roles do not grant the permission the operation needs."""

    def __init__(self, permission: str) -> None:
        super().__init__(f"This needs the permission {permission!r}.")
        self.permission = permission


class UserNotFound(AuthError):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"No user has the id {user_id!r}.")


class CannotChangeSelf(AuthError):
    """An administrator tried to lock themselves or take away their own admin role."""


class InvalidUserData(AuthError):
    """A user to create or update breaks a rule (unknown role, bad username, ...)."""


class UnknownRole(InvalidUserData):
    pass


class WeakPassword(InvalidUserData):
    def __init__(self, rule: PasswordRule, username: str | None = None) -> None:
        whose = f" (user {username!r})" if username else ""
        super().__init__(f"{rule.explain()}{whose}")
        self.rule = rule


class UsernameTaken(AuthError):
    def __init__(self, username: str) -> None:
        super().__init__(f"The username {username!r} is taken.")


class SigningKeyUnavailable(AuthError):
    """No active signing key is loaded yet; tokens cannot be issued."""


class SigningKeyUnreadable(AuthError):
    """The active key cannot be opened: the key-encryption key is not the one it was sealed
    with, or the stored key is damaged."""


class StorageConflict(AuthError):
    """A concurrent writer got there first (a unique constraint fired); re-read and retry."""
