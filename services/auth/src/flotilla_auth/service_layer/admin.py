"""The user administration API's use cases: create, list, read, grant and take away roles,
lock and unlock.

Permissions are checked here, whatever the gateway already checked (defense in depth), and
against the caller's roles as they are now in the database as well as in the token: an
administrator demoted or locked a minute ago cannot use the token they still hold.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from flotilla_auth.domain.audit_events import AuditAction
from flotilla_auth.domain.login_protection import account_key
from flotilla_auth.domain.password_policy import PasswordPolicy
from flotilla_auth.domain.users import User
from flotilla_auth.service_layer.errors import (
    CannotChangeSelf,
    Forbidden,
    StorageConflict,
    UnknownRole,
    UsernameTaken,
    UserNotFound,
)
from flotilla_auth.service_layer.ports import AuthUnitOfWork, PasswordHasher, UnitOfWorkFactory
from flotilla_auth.service_layer.users import check_password, valid_roles, valid_username
from flotilla_kit.logs import get_logger
from flotilla_kit.rbac import USER_ROLES, permissions_of
from flotilla_kit.tokens import Principal

__all__ = [
    "ADMIN_ROLE",
    "MAX_PAGE_SIZE",
    "UserPage",
    "assign_role",
    "create_user",
    "get_user_by_id",
    "list_users",
    "lock_user",
    "remove_role",
    "unlock_user",
]

_log = get_logger("flotilla.auth.admin")

READ = "users:read"
ADMIN = "users:admin"
ADMIN_ROLE = "admin"
MAX_PAGE_SIZE = 200


@dataclass(frozen=True, slots=True)
class UserPage:
    items: list[User]
    # The `after` cursor of the next page; None on the last page.
    next_cursor: str | None


async def _authorise(uow: AuthUnitOfWork, actor: Principal, permission: str) -> None:
    if not actor.can(permission):
        raise Forbidden(permission)
    current = await uow.users.get(actor.subject)
    if (
        current is None
        or not current.may_sign_in
        or permission not in permissions_of(current.roles)
    ):
        _log.warning("stale token refused", subject=actor.subject, permission=permission)
        raise Forbidden(permission)


async def _target(uow: AuthUnitOfWork, user_id: str) -> User:
    user = await uow.users.get(user_id)
    if user is None:
        raise UserNotFound(user_id)
    return user


def _known_role(role: str) -> str:
    if role not in USER_ROLES:
        raise UnknownRole(f"Unknown role {role!r}; known roles: {sorted(USER_ROLES)}.")
    return role


# -- reads ------------------------------------------------------------------------------------
async def list_users(
    *, uow: UnitOfWorkFactory, actor: Principal, limit: int, after: str | None = None
) -> UserPage:
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    async with uow(write=False) as reader:
        await _authorise(reader, actor, READ)
        # One more than asked tells whether another page follows.
        found = list(await reader.users.list_page(after=after, limit=limit + 1))
    items = found[:limit]
    return UserPage(items=items, next_cursor=items[-1].id if len(found) > limit else None)


async def get_user_by_id(*, uow: UnitOfWorkFactory, actor: Principal, user_id: str) -> User:
    async with uow(write=False) as reader:
        await _authorise(reader, actor, READ)
        return await _target(reader, user_id)


# -- writes -----------------------------------------------------------------------------------
async def create_user(
    *,
    uow: UnitOfWorkFactory,
    passwords: PasswordHasher,
    policy: PasswordPolicy,
    actor: Principal,
    now: datetime,
    username: str,
    password: str,
    roles: list[str],
) -> User:
    async with uow(write=False) as reader:
        # Before the slow hash: an unauthorised caller must not cost us argon2 time.
        await _authorise(reader, actor, ADMIN)
    name = valid_username(username)
    granted = valid_roles(roles, name)
    check_password(policy, password, name)
    password_hash = await passwords.hash(password)
    user = User(
        id=str(uuid.uuid4()),
        username=name,
        password_hash=password_hash,
        roles=granted,
        created_at=now,
    )
    async with uow() as writer:
        await _authorise(writer, actor, ADMIN)
        try:
            await writer.users.add(user)
        except StorageConflict as exc:
            raise UsernameTaken(name) from exc
        await writer.audit.record(
            actor=actor.subject,
            action=AuditAction.USER_CREATED,
            at=now,
            target=user.id,
            details={"username": name, "roles": list(granted)},
        )
        await writer.commit()
    _log.info("user created", user_id=user.id, by=actor.subject, roles=list(granted))
    return user


async def assign_role(
    *, uow: UnitOfWorkFactory, actor: Principal, now: datetime, user_id: str, role: str
) -> None:
    """Idempotent: giving a role the user holds changes (and records) nothing."""
    async with uow() as writer:
        await _authorise(writer, actor, ADMIN)
        _known_role(role)
        user = await _target(writer, user_id)
        if role in user.roles:
            return
        updated = replace(user, roles=tuple(sorted({*user.roles, role})))
        await writer.users.update(updated)
        await writer.audit.record(
            actor=actor.subject,
            action=AuditAction.ROLE_ASSIGNED,
            at=now,
            target=user.id,
            details={"username": user.username, "role": role, "roles": list(updated.roles)},
        )
        await writer.commit()
    _log.info("role assigned", user_id=user_id, role=role, by=actor.subject)


async def remove_role(
    *, uow: UnitOfWorkFactory, actor: Principal, now: datetime, user_id: str, role: str
) -> None:
    """Idempotent. Taking a role away also ends the user's sessions: their live access
    tokens still carry the role, and the revocation list is what stops them."""
    async with uow() as writer:
        await _authorise(writer, actor, ADMIN)
        _known_role(role)
        user = await _target(writer, user_id)
        if role == ADMIN_ROLE and user.id == actor.subject:
            raise CannotChangeSelf("An administrator cannot take away their own admin role.")
        if role not in user.roles:
            return
        updated = replace(user, roles=tuple(r for r in user.roles if r != role))
        await writer.users.update(updated)
        revoked = await writer.refresh_tokens.revoke_user(user.id, now)
        await writer.audit.record(
            actor=actor.subject,
            action=AuditAction.ROLE_REMOVED,
            at=now,
            target=user.id,
            details={
                "username": user.username,
                "role": role,
                "roles": list(updated.roles),
                "tokens_revoked": revoked,
            },
        )
        await writer.commit()
    _log.info("role removed", user_id=user_id, role=role, by=actor.subject)


async def lock_user(
    *, uow: UnitOfWorkFactory, actor: Principal, now: datetime, user_id: str
) -> None:
    """The user can no longer log in or refresh, and every session of theirs is revoked
    (their access tokens appear on the revocation list)."""
    async with uow() as writer:
        await _authorise(writer, actor, ADMIN)
        user = await _target(writer, user_id)
        if user.id == actor.subject:
            raise CannotChangeSelf("An administrator cannot lock themselves.")
        if user.locked:
            return
        await writer.users.update(replace(user, locked=True))
        revoked = await writer.refresh_tokens.revoke_user(user.id, now)
        await writer.audit.record(
            actor=actor.subject,
            action=AuditAction.USER_LOCKED,
            at=now,
            target=user.id,
            details={"username": user.username, "tokens_revoked": revoked},
        )
        await writer.commit()
    _log.info("user locked", user_id=user_id, by=actor.subject, tokens_revoked=revoked)


async def unlock_user(
    *, uow: UnitOfWorkFactory, actor: Principal, now: datetime, user_id: str
) -> None:
    """Lifts an administrator's lock, and a failed-login lockout of the account with it
    (the usual reason a user calls the help desk)."""
    async with uow() as writer:
        await _authorise(writer, actor, ADMIN)
        user = await _target(writer, user_id)
        counter_key = account_key(user.username)
        lockout = await writer.login_throttles.get(counter_key, for_update=True)
        if not user.locked and lockout is None:
            return
        if user.locked:
            await writer.users.update(replace(user, locked=False))
        if lockout is not None:
            await writer.login_throttles.delete(counter_key)
        await writer.audit.record(
            actor=actor.subject,
            action=AuditAction.USER_UNLOCKED,
            at=now,
            target=user.id,
            details={
                "username": user.username,
                "was_locked": user.locked,
                "failed_logins_reset": lockout is not None,
            },
        )
        await writer.commit()
    _log.info("user unlocked", user_id=user_id, by=actor.subject)
