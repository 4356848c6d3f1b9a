"""What the use cases need from the outside world; the adapters implement it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from flotilla_auth.domain.login_protection import FailureCounter
from flotilla_auth.domain.refresh_tokens import RefreshToken
from flotilla_auth.domain.service_clients import VerifiedAssertion
from flotilla_auth.domain.signing_keys import SigningKey
from flotilla_auth.domain.users import User
from flotilla_kit.unit_of_work import UnitOfWork
from flotilla_kit.unit_of_work import UnitOfWorkFactory as KitUnitOfWorkFactory

__all__ = [
    "AuditTrail",
    "AuthUnitOfWork",
    "ClientAssertionRepository",
    "ClientAssertionVerifier",
    "KeyMaterial",
    "LoginThrottleRepository",
    "PasswordHasher",
    "RefreshTokenRepository",
    "SigningKeyRepository",
    "TokenSigner",
    "UnitOfWorkFactory",
    "UserRepository",
]


class UserRepository(Protocol):
    async def get(self, user_id: str) -> User | None: ...

    async def get_by_username(self, username: str) -> User | None: ...

    async def list_page(self, *, after: str | None, limit: int) -> Sequence[User]:
        """Users ordered by id, those with an id greater than `after` (all when None)."""

    async def add(self, user: User) -> None:
        """Raises `StorageConflict` when the username is taken."""

    async def update(self, user: User) -> None: ...


class RefreshTokenRepository(Protocol):
    async def add(self, token: RefreshToken) -> None: ...

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None: ...

    async def get_with_owner(self, token_hash: str) -> tuple[RefreshToken, User | None] | None:
        """The token with this hash and its user (None when the user is gone), read in one
        go: the refresh grant needs both."""

    async def mark_used(self, token_id: str, at: datetime) -> bool:
        """Spend the token if it is neither spent nor revoked; False if someone else did."""

    async def revoke_family(self, family_id: str, at: datetime) -> int: ...

    async def revoke_user(self, user_id: str, at: datetime) -> int: ...

    async def family_revoked(self, family_id: str) -> bool: ...

    async def families_revoked_since(self, since: datetime) -> Sequence[str]:
        """Ids of the families with a token revoked at or after `since`."""


class SigningKeyRepository(Protocol):
    async def get_active(self) -> SigningKey | None: ...

    async def get_next(self) -> SigningKey | None: ...

    async def add(self, key: SigningKey) -> None:
        """Raises `StorageConflict` when another active (or staged) key was added
        concurrently: the database admits one of each."""

    async def retire(self, kid: str, at: datetime) -> bool:
        """Compare-and-set active -> retired; False when the key is not active (any more)."""

    async def activate(self, kid: str, at: datetime) -> bool:
        """Compare-and-set next -> active; False when the key is not staged (any more)."""

    async def list_all(self) -> Sequence[SigningKey]: ...


class LoginThrottleRepository(Protocol):
    async def get(self, key: str, *, for_update: bool = False) -> FailureCounter | None: ...

    async def get_pair(
        self, first: str, second: str
    ) -> tuple[FailureCounter | None, FailureCounter | None]:
        """The counters under two keys, read in one go (without locking them)."""

    async def put(self, counter: FailureCounter) -> None:
        """Insert or replace; raises `StorageConflict` when a concurrent insert won."""

    async def delete(self, key: str) -> None: ...

    async def delete_expired(self, now: datetime) -> int: ...


class ClientAssertionRepository(Protocol):
    async def remember(self, *, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record a spent assertion id; False when it was spent before (a replay)."""

    async def delete_expired(self, now: datetime) -> int: ...


class AuditTrail(Protocol):
    async def record(
        self,
        *,
        actor: str,
        action: str,
        at: datetime,
        target: str | None = None,
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an event in this unit of work's transaction."""


class AuthUnitOfWork(UnitOfWork, Protocol):
    """One transaction; rolled back on exit unless committed."""

    # Read-only in the protocol, so an implementation may hold more specific repositories.
    @property
    def users(self) -> UserRepository: ...

    @property
    def refresh_tokens(self) -> RefreshTokenRepository: ...

    @property
    def signing_keys(self) -> SigningKeyRepository: ...

    @property
    def login_throttles(self) -> LoginThrottleRepository: ...

    @property
    def client_assertions(self) -> ClientAssertionRepository: ...

    @property
    def audit(self) -> AuditTrail: ...


UnitOfWorkFactory = KitUnitOfWorkFactory[AuthUnitOfWork]


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real verification, for a user who does not exist."""

    def needs_rehash(self, password_hash: str) -> bool: ...


class TokenSigner(Protocol):
    @property
    def kid(self) -> str: ...

    def sign(self, claims: Mapping[str, object]) -> str: ...


class KeyMaterial(Protocol):
    def generate(self, *, now: datetime) -> SigningKey:
        """A fresh staged (`next`) key, its private half sealed."""

    def signer_for(self, key: SigningKey) -> TokenSigner:
        """Open the sealed private key; raises `SigningKeyUnreadable`."""


class ClientAssertionVerifier(Protocol):
    def verify(self, assertion: str, *, now: datetime) -> VerifiedAssertion:
        """Check an RFC 7523 client assertion and its certificate; raises `InvalidClient`."""
