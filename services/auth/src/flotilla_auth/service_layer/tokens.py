"""Use cases of the token endpoint: the password grant, the refresh grant, logout.

Every refusal leaves the database as it was, with one exception on purpose: presenting a
spent refresh token revokes its family, and that revocation is committed before refusing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import NoReturn

from flotilla_auth.domain.access_tokens import AccessTokenClaims
from flotilla_auth.domain.refresh_tokens import (
    MAX_REFRESH_TOKEN_LENGTH,
    RefreshToken,
    RefreshTokenState,
    hash_refresh_token,
)
from flotilla_auth.domain.scopes import format_scope, parse_scope
from flotilla_auth.domain.token_policy import TokenPolicy
from flotilla_auth.domain.usernames import normalise_username
from flotilla_auth.domain.users import User
from flotilla_auth.service_layer.errors import InvalidGrant, InvalidScope
from flotilla_auth.service_layer.ports import (
    AuthUnitOfWork,
    PasswordHasher,
    TokenSigner,
    UnitOfWorkFactory,
)
from flotilla_kit.logs import get_logger
from flotilla_kit.rbac import permissions_of

__all__ = ["TokenGrant", "grant_password", "grant_refresh_token", "revoke_refresh_family"]

_log = get_logger("flotilla.auth.tokens")


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What the token endpoint answers (RFC 6749 section 5.1)."""

    access_token: str
    expires_in: int
    refresh_token: str
    scope: str
    token_type: str = "Bearer"  # noqa: S105 - RFC 6750 token type, not a secret


def _requested_scope(raw: str | None) -> tuple[str, ...]:
    scope = parse_scope(raw)
    if scope is None:
        raise InvalidScope("The scope parameter is malformed.")
    return scope


def _grantable(user: User, requested: tuple[str, ...]) -> tuple[str, ...]:
    # A scope narrows what a token may do, never widens it: only permissions the user's
    # roles hold can be granted, and anything else is dropped (RFC 6749 section 3.3 lets
    # the server grant less; the response says what was granted).
    held = permissions_of(user.roles)
    return tuple(scope for scope in requested if scope in held)


def _issue(
    *,
    user: User,
    refresh_token: str,
    scope: tuple[str, ...],
    signer: TokenSigner,
    policy: TokenPolicy,
    now: datetime,
) -> TokenGrant:
    claims = AccessTokenClaims.for_user(user, scope=scope, policy=policy, now=now)
    return TokenGrant(
        access_token=signer.sign(claims.to_jwt()),
        expires_in=claims.expires_in,
        refresh_token=refresh_token,
        scope=format_scope(scope),
    )


async def grant_password(
    *,
    uow: UnitOfWorkFactory,
    passwords: PasswordHasher,
    signer: TokenSigner,
    policy: TokenPolicy,
    now: datetime,
    username: str,
    password: str,
    scope: str | None = None,
) -> TokenGrant:
    """Resource owner password credentials grant: a new token family per login."""
    requested = _requested_scope(scope)
    async with uow(write=False) as reader:
        user = await reader.users.get_by_username(normalise_username(username))

    # The password is checked outside any transaction: argon2 is slow on purpose, and a
    # SQLite writer holding the lock that long would queue every other login behind it.
    if user is None:
        await passwords.verify_dummy(password)
        _log.info("login refused", reason="unknown user")
        raise InvalidGrant
    if not await passwords.verify(user.password_hash, password):
        _log.info("login refused", reason="wrong password", user_id=user.id)
        raise InvalidGrant
    if user.disabled:
        _log.info("login refused", reason="user disabled", user_id=user.id)
        raise InvalidGrant
    new_hash = (
        await passwords.hash(password) if passwords.needs_rehash(user.password_hash) else None
    )

    async with uow() as writer:
        current = await writer.users.get(user.id)
        # The user may have been disabled or given a new password while we were hashing.
        if current is None or current.disabled or current.password_hash != user.password_hash:
            raise InvalidGrant
        if new_hash is not None:
            current = replace(current, password_hash=new_hash)
            await writer.users.update(current)
        granted = _grantable(current, requested)
        token, record = RefreshToken.issue(
            user_id=current.id, scope=granted, now=now, ttl_s=policy.refresh_token_ttl_s
        )
        await writer.refresh_tokens.add(record)
        grant = _issue(
            user=current, refresh_token=token, scope=granted, signer=signer, policy=policy, now=now
        )
        await writer.commit()
    _log.info("login", user_id=current.id, family_id=record.family_id)
    return grant


async def _refuse_reuse(writer: AuthUnitOfWork, *, stored: RefreshToken, now: datetime) -> NoReturn:
    # Two parties hold this family (one of them stole it). Revoke all of it, and commit
    # that before refusing: this is the one refusal that must leave a trace.
    revoked = await writer.refresh_tokens.revoke_family(stored.family_id, now)
    await writer.commit()
    _log.warning(
        "refresh token reuse; family revoked",
        user_id=stored.user_id,
        family_id=stored.family_id,
        revoked=revoked,
    )
    raise InvalidGrant


async def grant_refresh_token(
    *,
    uow: UnitOfWorkFactory,
    signer: TokenSigner,
    policy: TokenPolicy,
    now: datetime,
    refresh_token: str,
    scope: str | None = None,
) -> TokenGrant:
    """Spend a refresh token for a new access token and its successor in the same family."""
    requested = _requested_scope(scope)
    if len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
        raise InvalidGrant
    async with uow() as writer:
        stored = await writer.refresh_tokens.get_by_hash(hash_refresh_token(refresh_token))
        if stored is None:
            raise InvalidGrant
        state = stored.state(now)
        if state is RefreshTokenState.SPENT:
            await _refuse_reuse(writer, stored=stored, now=now)
        if state is not RefreshTokenState.USABLE:
            raise InvalidGrant
        user = await writer.users.get(stored.user_id)
        if user is None or user.disabled:
            raise InvalidGrant
        if not set(requested) <= set(stored.scope):
            # RFC 6749 section 6: a refresh may narrow the scope, never add to it.
            raise InvalidScope("The requested scope exceeds the scope originally granted.")
        if not await writer.refresh_tokens.mark_used(stored.id, now):
            # A concurrent request spent it a moment ago: that is reuse too.
            await _refuse_reuse(writer, stored=stored, now=now)

        # Roles may have changed since the login: grant only what they still allow.
        granted = _grantable(user, requested or stored.scope)
        token, successor = stored.successor(now=now, ttl_s=policy.refresh_token_ttl_s)
        await writer.refresh_tokens.add(successor)
        grant = _issue(
            user=user, refresh_token=token, scope=granted, signer=signer, policy=policy, now=now
        )
        await writer.commit()
    return grant


async def revoke_refresh_family(
    *, uow: UnitOfWorkFactory, now: datetime, refresh_token: str
) -> None:
    """Logout: the token's whole family stops working. Unknown tokens are ignored (RFC 7009
    section 2.2), so a client cannot probe which tokens exist."""
    if len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
        return
    async with uow() as writer:
        stored = await writer.refresh_tokens.get_by_hash(hash_refresh_token(refresh_token))
        if stored is None:
            return
        await writer.refresh_tokens.revoke_family(stored.family_id, now)
        await writer.commit()
    _log.info("logout", user_id=stored.user_id, family_id=stored.family_id)
