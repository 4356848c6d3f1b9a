"""Use cases about users: make them exist as declared (seeding), and look one up."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from flotilla_auth.domain.usernames import is_valid_username, normalise_username
from flotilla_auth.domain.users import User
from flotilla_auth.service_layer.errors import InvalidUserData, StorageConflict, UnknownSubject
from flotilla_auth.service_layer.ports import PasswordHasher, UnitOfWorkFactory
from flotilla_kit.logs import get_logger
from flotilla_kit.rbac import ROLES

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "UserSpec",
    "ensure_users",
    "get_user",
    "validated_specs",
]

_log = get_logger("flotilla.auth.users")

MIN_PASSWORD_LENGTH = 8
# argon2 pre-hashes any length cheaply; the cap only keeps absurd inputs out of the store.
MAX_PASSWORD_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class UserSpec:
    """A user as declared by a seed file: this password, these roles, nothing else."""

    username: str
    password: str
    roles: tuple[str, ...]
    disabled: bool = False
    # The id to give the user if it is created now, so fixtures in other services can
    # refer to it before this seed runs; an existing user keeps the id it has.
    id: str | None = None


def _validated(spec: UserSpec) -> UserSpec:
    username = normalise_username(spec.username)
    if not is_valid_username(username):
        raise InvalidUserData(f"username {spec.username!r} must be 1-64 characters, no spaces")
    if not MIN_PASSWORD_LENGTH <= len(spec.password) <= MAX_PASSWORD_LENGTH:
        raise InvalidUserData(
            f"the password of {username!r} must be {MIN_PASSWORD_LENGTH}-"
            f"{MAX_PASSWORD_LENGTH} characters"
        )
    unknown = sorted(set(spec.roles) - ROLES)
    if unknown:
        raise InvalidUserData(
            f"user {username!r} has unknown roles {unknown}; known roles: {sorted(ROLES)}"
        )
    return replace(spec, username=username, roles=tuple(sorted(set(spec.roles))))


def validated_specs(users: Sequence[UserSpec]) -> list[UserSpec]:
    """The declarations normalised (username, sorted roles), or `InvalidUserData`."""
    specs = [_validated(spec) for spec in users]
    names = [spec.username for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidUserData(f"usernames declared more than once: {duplicates}")
    return specs


@dataclass(frozen=True, slots=True)
class _Credential:
    password_hash: str  # what to store
    verified_against: str | None  # the stored hash the declared password already matched


async def _credential(
    passwords: PasswordHasher, existing: User | None, password: str
) -> _Credential:
    if existing is not None and await passwords.verify(existing.password_hash, password):
        stored = existing.password_hash
        if passwords.needs_rehash(stored):
            return _Credential(await passwords.hash(password), verified_against=stored)
        return _Credential(stored, verified_against=stored)
    return _Credential(await passwords.hash(password), verified_against=None)


async def _ensure_once(
    *,
    uow: UnitOfWorkFactory,
    passwords: PasswordHasher,
    now: datetime,
    specs: Sequence[UserSpec],
) -> list[User]:
    async with uow(write=False) as reader:
        existing = {
            spec.username: await reader.users.get_by_username(spec.username) for spec in specs
        }
    # Hash outside the write transaction (argon2 is slow on purpose).
    credentials = {
        spec.username: await _credential(passwords, existing[spec.username], spec.password)
        for spec in specs
    }

    ensured: list[User] = []
    async with uow() as writer:
        for spec in specs:
            credential = credentials[spec.username]
            current = await writer.users.get_by_username(spec.username)
            if current is None:
                user = User(
                    id=spec.id or str(uuid.uuid4()),
                    username=spec.username,
                    password_hash=credential.password_hash,
                    roles=spec.roles,
                    created_at=now,
                    disabled=spec.disabled,
                )
                await writer.users.add(user)
                _log.info("user created", user_id=user.id, roles=list(user.roles))
            else:
                user = replace(
                    current,
                    password_hash=credential.password_hash,
                    roles=spec.roles,
                    disabled=spec.disabled,
                )
                if user != current:
                    await writer.users.update(user)
                if credential.verified_against != current.password_hash:
                    # A new password ends every session opened with the old one.
                    await writer.refresh_tokens.revoke_user(user.id, now)
                    _log.info("password changed; sessions revoked", user_id=user.id)
                if user.roles != current.roles:
                    _log.info("roles changed", user_id=user.id, roles=list(user.roles))
            ensured.append(user)
        await writer.commit()
    return ensured


async def ensure_users(
    *,
    uow: UnitOfWorkFactory,
    passwords: PasswordHasher,
    now: datetime,
    users: Sequence[UserSpec],
) -> list[User]:
    """Create or update each user to exactly the declared password, roles and state.

    All or nothing: every declaration is checked before anything is written, and all users
    are written in one transaction. Running it twice changes nothing the second time.
    """
    specs = validated_specs(users)
    try:
        return await _ensure_once(uow=uow, passwords=passwords, now=now, specs=specs)
    except StorageConflict:
        # Another seeder created one of these users meanwhile; now they exist, update them.
        return await _ensure_once(uow=uow, passwords=passwords, now=now, specs=specs)


async def get_user(*, uow: UnitOfWorkFactory, user_id: str) -> User:
    """The user an access token speaks for, if they still exist and may sign in."""
    async with uow(write=False) as reader:
        user = await reader.users.get(user_id)
    if user is None or user.disabled:
        raise UnknownSubject(user_id)
    return user
