"""The security events the auth service writes to its audit log."""

from __future__ import annotations

import enum

__all__ = ["AuditAction", "Outcome"]


class AuditAction(enum.StrEnum):
    LOGIN_SUCCEEDED = "login.success"
    LOGIN_FAILED = "login.failure"
    LOCKOUT_STARTED = "login.lockout"
    REFRESH_TOKEN_REUSED = "refresh_token.reuse"  # noqa: S105 - an event name
    LOGGED_OUT = "logout"
    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"  # by a seed file: password, roles or disabled flag
    ROLE_ASSIGNED = "role.assigned"
    ROLE_REMOVED = "role.removed"
    USER_LOCKED = "user.locked"
    USER_UNLOCKED = "user.unlocked"
    KEY_STAGED = "key.staged"
    KEY_ACTIVATED = "key.activated"
    KEY_RETIRED = "key.retired"
    CLIENT_CREDENTIALS_ISSUED = "client_credentials.issued"
    CLIENT_CREDENTIALS_REFUSED = "client_credentials.refused"


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
