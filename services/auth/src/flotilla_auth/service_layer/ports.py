"""What the use cases need from the outside world; the adapters implement it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from flotilla_auth.domain.refresh_tokens import RefreshToken
from flotilla_auth.domain.signing_keys import SigningKey
from flotilla_auth.domain.users import User

__all__ = [
    "AuthUnitOfWork",
    "Clock",
    "KeyMaterial",
    "PasswordHasher",
    "RefreshTokenRepository",
    "SigningKeyRepository",
    "TokenSigner",
    "UnitOfWorkFactory",
    "UserRepository",
]

Clock = Callable[[], datetime]


class UserRepository(Protocol):
    async def get(self, user_id: str) -> User | None: ...

    async def get_by_username(self, username: str) -> User | None: ...

    async def add(self, user: User) -> None:
        """Raises `StorageConflict` when the username is taken."""

    async def update(self, user: User) -> None: ...


class RefreshTokenRepository(Protocol):
    async def add(self, token: RefreshToken) -> None: ...

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None: ...

    async def mark_used(self, token_id: str, at: datetime) -> bool:
        """Spend the token if it is neither spent nor revoked; False if someone else did."""

    async def revoke_family(self, family_id: str, at: datetime) -> int: ...

    async def revoke_user(self, user_id: str, at: datetime) -> int: ...


class SigningKeyRepository(Protocol):
    async def get_active(self) -> SigningKey | None: ...

    async def add(self, key: SigningKey) -> None:
        """Raises `StorageConflict` when another active key was added concurrently."""

    async def list_all(self) -> Sequence[SigningKey]: ...


class AuthUnitOfWork(Protocol):
    """One transaction; rolled back on exit unless committed."""

    # Read-only in the protocol, so an implementation may hold more specific repositories.
    @property
    def users(self) -> UserRepository: ...

    @property
    def refresh_tokens(self) -> RefreshTokenRepository: ...

    @property
    def signing_keys(self) -> SigningKeyRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, write: bool = True) -> AuthUnitOfWork: ...


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
        """A fresh active key, its private half sealed."""

    def signer_for(self, key: SigningKey) -> TokenSigner:
        """Open the sealed private key; raises `SigningKeyUnreadable`."""
