"""Use cases about users: make them exist as declared (seeding), and look one up."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from flotilla_auth.domain.audit_events import AuditAction
from flotilla_auth.domain.password_policy import PasswordPolicy
from flotilla_auth.domain.usernames import is_valid_username, normalise_username
from flotilla_auth.domain.users import User
from flotilla_auth.service_layer.errors import (
    InvalidUserData,
    StorageConflict,
    UnknownRole,
    UnknownSubject,
    WeakPassword,
)
from flotilla_auth.service_layer.ports import AuditTrail, PasswordHasher, UnitOfWorkFactory
from flotilla_kit.logs import get_logger
from flotilla_kit.rbac import USER_ROLES

__all__ = ["UserSpec", "ensure_users", "get_user", "validated_specs"]

_log = get_logger("flotilla.auth.users")


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


def valid_username(raw: str) -> str:
    """The normalised username, or `InvalidUserData`."""
    username = normalise_username(raw)
    if not is_valid_username(username):
        raise InvalidUserData(f"The username {raw!r} must be 1-64 characters, no spaces.")
    return username


def valid_roles(roles: Sequence[str], username: str) -> tuple[str, ...]:
    """Sorted, without duplicates; only roles a person may hold (never a service's)."""
    unknown = sorted(set(roles) - USER_ROLES)
    if unknown:
        raise UnknownRole(
            f"User {username!r} has unknown roles {unknown}; known roles: {sorted(USER_ROLES)}."
        )
    return tuple(sorted(set(roles)))


def check_password(policy: PasswordPolicy, password: str, username: str) -> None:
    rule = policy.violation(password, username)
    if rule is not None:
        raise WeakPassword(rule, username)


def _validated(spec: UserSpec, policy: PasswordPolicy) -> UserSpec:
    username = valid_username(spec.username)
    check_password(policy, spec.password, username)
    return replace(spec, username=username, roles=valid_roles(spec.roles, username))


def validated_specs(users: Sequence[UserSpec], *, policy: PasswordPolicy) -> list[UserSpec]:
    """The declarations normalised (username, sorted roles), or `InvalidUserData`."""
    specs = [_validated(spec, policy) for spec in users]
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


async def _audit_update(
    audit: AuditTrail, *, actor: str, now: datetime, before: User, after: User, password: bool
) -> None:
    changed = [
        name
        for name, differs in (
            ("password", password),
            ("roles", before.roles != after.roles),
            ("disabled", before.disabled != after.disabled),
        )
        if differs
    ]
    if changed:
        await audit.record(
            actor=actor,
            action=AuditAction.USER_UPDATED,
            at=now,
            target=after.id,
            details={
                "username": after.username,
                "changed": changed,
                "roles": list(after.roles),
                "disabled": after.disabled,
            },
        )


async def _ensure_once(
    *,
    uow: UnitOfWorkFactory,
    passwords: PasswordHasher,
    now: datetime,
    specs: Sequence[UserSpec],
    actor: str,
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
                await writer.audit.record(
                    actor=actor,
                    action=AuditAction.USER_CREATED,
                    at=now,
                    target=user.id,
                    details={"username": user.username, "roles": list(user.roles)},
                )
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
                new_password = credential.verified_against != current.password_hash
                if new_password:
                    # A new password ends every session opened with the old one.
                    await writer.refresh_tokens.revoke_user(user.id, now)
                    _log.info("password changed; sessions revoked", user_id=user.id)
                await _audit_update(
                    writer.audit,
                    actor=actor,
                    now=now,
                    before=current,
                    after=user,
                    password=new_password,
                )
                if user.roles != current.roles:
                    _log.info("roles changed", user_id=user.id, roles=list(user.roles))
            ensured.append(user)
        await writer.commit()
    return ensured


async def ensure_users(
    *,
    uow: UnitOfWorkFactory,
    passwords: PasswordHasher,
    policy: PasswordPolicy,
    now: datetime,
    users: Sequence[UserSpec],
    actor: str = "seed",
) -> list[User]:
    """Create or update each user to exactly the declared password, roles and `disabled`
    flag. An administrator's lock is left as it is: provisioning does not undo incident
    response.

    All or nothing: every declaration is checked before anything is written, and all users
    are written in one transaction. Running it twice changes nothing the second time.
    """
    specs = validated_specs(users, policy=policy)
    try:
        return await _ensure_once(uow=uow, passwords=passwords, now=now, specs=specs, actor=actor)
    except StorageConflict:
        # Another seeder created one of these users meanwhile; now they exist, update them.
        return await _ensure_once(uow=uow, passwords=passwords, now=now, specs=specs, actor=actor)


async def get_user(*, uow: UnitOfWorkFactory, user_id: str, session_id: str | None = None) -> User:
    """The user an access token speaks for, if they still exist and may sign in, and the
    token's session was not revoked (checked here at once, not at the next poll)."""
    async with uow(write=False) as reader:
        user = await reader.users.get(user_id)
        revoked = session_id is not None and await reader.refresh_tokens.family_revoked(session_id)
    if user is None or not user.may_sign_in or revoked:
        raise UnknownSubject(user_id)
    return user
