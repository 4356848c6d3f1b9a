"""A login session as the web service keeps it (server-side: the browser holds only a
random id), and the rules of its lifetime."""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass, replace

from flotilla_kit.rbac import permissions_of
from flotilla_web.domain.basket import Basket

__all__ = [
    "Session",
    "SessionPolicy",
    "Tokens",
    "new_secret",
    "same_secret",
    "valid_secret",
]

# A session id and a CSRF token: 32 random bytes, URL-safe base64 without padding.
_SECRET_BYTES = 32
_SECRET_LENGTH = 43
_SECRET_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_secret() -> str:
    """256 random bits, as 43 URL-safe characters."""
    return secrets.token_urlsafe(_SECRET_BYTES)


def valid_secret(value: str | None) -> bool:
    """Whether `value` has the shape `new_secret` gives (checked before any lookup)."""
    return (
        value is not None
        and len(value) == _SECRET_LENGTH
        and all(c in _SECRET_ALPHABET for c in value)
    )


def same_secret(expected: str, given: str | None) -> bool:
    """Constant-time comparison: how long it takes says nothing about how much matched."""
    if given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True, slots=True)
class Tokens:
    """What the auth service issued: never shown to the browser."""

    access_token: str
    refresh_token: str
    # When the access token expires (its `exp`).
    access_expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    username: str
    roles: frozenset[str]
    tokens: Tokens
    csrf_token: str
    basket: Basket
    created_at: dt.datetime
    # The end of the session whatever happens (login + the absolute timeout).
    expires_at: dt.datetime
    last_seen_at: dt.datetime

    @property
    def permissions(self) -> frozenset[str]:
        return permissions_of(self.roles)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def with_tokens(self, tokens: Tokens, roles: frozenset[str]) -> Session:
        return replace(self, tokens=tokens, roles=roles)

    def with_basket(self, basket: Basket) -> Session:
        return replace(self, basket=basket)

    def seen(self, now: dt.datetime) -> Session:
        return replace(self, last_seen_at=now)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle_timeout: dt.timedelta
    absolute_timeout: dt.timedelta
    refresh_before: dt.timedelta
    touch_every: dt.timedelta

    def new(
        self,
        *,
        user_id: str,
        username: str,
        roles: frozenset[str],
        tokens: Tokens,
        now: dt.datetime,
    ) -> Session:
        return Session(
            user_id=user_id,
            username=username,
            roles=roles,
            tokens=tokens,
            csrf_token=new_secret(),
            basket=Basket(),
            created_at=now,
            expires_at=now + self.absolute_timeout,
            last_seen_at=now,
        )

    def is_over(self, session: Session, now: dt.datetime) -> bool:
        """Past its absolute end, or unused for longer than the idle timeout."""
        return now >= session.expires_at or now - session.last_seen_at >= self.idle_timeout

    def needs_refresh(self, session: Session, now: dt.datetime) -> bool:
        """The access token expires within `refresh_before` (or has expired)."""
        return session.tokens.access_expires_at - now < self.refresh_before

    def needs_touch(self, session: Session, now: dt.datetime) -> bool:
        return now - session.last_seen_at >= self.touch_every
