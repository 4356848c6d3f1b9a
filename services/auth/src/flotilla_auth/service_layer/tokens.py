"""Use cases of the token endpoint: the password grant, the refresh grant, logout.

Refusals leave the users, sessions and keys as they were. What a refusal does write, each
in its own transaction, is its trace: a failed login bumps the failed-login counters and
is audited; presenting a spent refresh token revokes its family, and that revocation is
committed (and audited) before refusing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import NoReturn

from flotilla_auth.domain.access_tokens import AccessTokenClaims
from flotilla_auth.domain.audit_events import AuditAction, Outcome
from flotilla_auth.domain.login_protection import LoginProtection, account_key, ip_key
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
from flotilla_auth.service_layer.errors import (
    InvalidGrant,
    InvalidScope,
    StorageConflict,
    TooManyLoginAttempts,
)
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
    refresh_token: RefreshToken,
    token: str,
    scope: tuple[str, ...],
    signer: TokenSigner,
    policy: TokenPolicy,
    now: datetime,
) -> TokenGrant:
    claims = AccessTokenClaims.for_user(
        user, scope=scope, policy=policy, now=now, session_id=refresh_token.family_id
    )
    return TokenGrant(
        access_token=signer.sign(claims.to_jwt()),
        expires_in=claims.expires_in,
        refresh_token=token,
        scope=format_scope(scope),
    )


# -- password grant ---------------------------------------------------------------------------
def _refusal(user: User | None, *, verified: bool, locked_out: bool) -> str | None:
    """Why a checked login is refused (for the audit trail only), or None."""
    if locked_out:
        return "locked_out"
    if user is None:
        return "unknown_user"
    if not verified:
        return "wrong_password"
    if user.locked:
        return "user_locked"
    if user.disabled:
        return "user_disabled"
    return None


async def _record_failure(
    *,
    uow: UnitOfWorkFactory,
    protection: LoginProtection,
    now: datetime,
    username: str,
    client_ip: str,
    reason: str,
    user_id: str | None,
) -> None:
    """Count the failure (account and IP), start a lockout when due, audit; one transaction.

    A login refused because the account is locked out counts against the IP only: the
    lockout's length grows with failures after it ends, not with attempts during it.
    """
    account, ip = account_key(username), ip_key(client_ip)
    for attempt in range(2):
        try:
            async with uow() as writer:
                # Account first, then IP, then the audit lock: every writer takes them in
                # this order, so none waits for another in a circle.
                counter = await writer.login_throttles.get(account, for_update=True)
                lockout = None
                if not protection.account_locked(counter, now):
                    counter = protection.after_account_failure(counter, account, now)
                    await writer.login_throttles.put(counter)
                    if protection.account_locked(counter, now):
                        lockout = counter
                ip_counter = await writer.login_throttles.get(ip, for_update=True)
                await writer.login_throttles.put(protection.after_ip_failure(ip_counter, ip, now))
                await writer.audit.record(
                    actor=username,
                    action=AuditAction.LOGIN_FAILED,
                    at=now,
                    target=user_id,
                    outcome=Outcome.FAILURE,
                    details={"ip": client_ip, "reason": reason},
                )
                if lockout is not None and lockout.locked_until is not None:
                    await writer.audit.record(
                        actor=username,
                        action=AuditAction.LOCKOUT_STARTED,
                        at=now,
                        target=user_id,
                        outcome=Outcome.FAILURE,
                        details={
                            "ip": client_ip,
                            "failures": lockout.failures,
                            "locked_until": lockout.locked_until.isoformat(),
                        },
                    )
                await writer.commit()
        except StorageConflict:
            # Another instance created one of the counters a moment ago; count again.
            if attempt == 0:
                continue
            _log.error("could not record a failed login", reason=reason)
        return


async def grant_password(
    *,
    uow: UnitOfWorkFactory,
    passwords: PasswordHasher,
    signer: TokenSigner,
    policy: TokenPolicy,
    protection: LoginProtection,
    now: datetime,
    username: str,
    password: str,
    client_ip: str,
    scope: str | None = None,
) -> TokenGrant:
    """Resource owner password credentials grant: a new token family per login.

    Unknown user, wrong password, disabled or locked user, and a locked-out account all end
    in the same `InvalidGrant` after exactly one argon2 verification, so neither the answer
    nor its timing tells them apart. Too many failures from one client address end in
    `TooManyLoginAttempts` before any password is checked.
    """
    requested = _requested_scope(scope)
    name = normalise_username(username)
    async with uow(write=False) as reader:
        # Both counters in one statement; the user is read only once the IP may go on.
        ip_counter, counter = await reader.login_throttles.get_pair(
            ip_key(client_ip), account_key(name)
        )
        retry_after = protection.ip_retry_after(ip_counter, now)
        if retry_after is not None:
            _log.info("login throttled", client_ip=client_ip, retry_after_s=retry_after)
            raise TooManyLoginAttempts(retry_after)
        user = await reader.users.get_by_username(name)

    # The password is checked outside any transaction: argon2 is slow on purpose, and a
    # SQLite writer holding the lock that long would queue every other login behind it.
    if user is None:
        await passwords.verify_dummy(password)
        verified = False
    else:
        verified = await passwords.verify(user.password_hash, password)
    reason = _refusal(user, verified=verified, locked_out=protection.account_locked(counter, now))
    if reason is None:
        assert user is not None
        grant = await _open_session(
            uow=uow,
            passwords=passwords,
            signer=signer,
            policy=policy,
            protection=protection,
            now=now,
            user=user,
            password=password,
            requested=requested,
            client_ip=client_ip,
        )
        if grant is not None:
            return grant
        reason = "changed_meanwhile"
    await _record_failure(
        uow=uow,
        protection=protection,
        now=now,
        username=name,
        client_ip=client_ip,
        reason=reason,
        user_id=user.id if user is not None else None,
    )
    _log.info("login refused", reason=reason, client_ip=client_ip)
    raise InvalidGrant


async def _open_session(
    *,
    uow: UnitOfWorkFactory,
    passwords: PasswordHasher,
    signer: TokenSigner,
    policy: TokenPolicy,
    protection: LoginProtection,
    now: datetime,
    user: User,
    password: str,
    requested: tuple[str, ...],
    client_ip: str,
) -> TokenGrant | None:
    """Start the session of a verified login; None when the user or the lockout changed
    while the password was being checked (then nothing is written)."""
    new_hash = (
        await passwords.hash(password) if passwords.needs_rehash(user.password_hash) else None
    )
    async with uow() as writer:
        current = await writer.users.get(user.id)
        # The user may have been locked, disabled or given a new password meanwhile, or
        # concurrent failures may have locked the account out.
        counter = await writer.login_throttles.get(account_key(user.username), for_update=True)
        if (
            current is None
            or not current.may_sign_in
            or current.password_hash != user.password_hash
            or protection.account_locked(counter, now)
        ):
            return None
        if new_hash is not None:
            current = replace(current, password_hash=new_hash)
            await writer.users.update(current)
        if counter is not None:
            await writer.login_throttles.delete(counter.key)  # a success resets the count
        granted = _grantable(current, requested)
        token, record = RefreshToken.issue(
            user_id=current.id, scope=granted, now=now, ttl_s=policy.refresh_token_ttl_s
        )
        await writer.refresh_tokens.add(record)
        grant = _issue(
            user=current,
            refresh_token=record,
            token=token,
            scope=granted,
            signer=signer,
            policy=policy,
            now=now,
        )
        await writer.audit.record(
            actor=current.username,
            action=AuditAction.LOGIN_SUCCEEDED,
            at=now,
            target=current.id,
            details={"ip": client_ip, "session": record.family_id},
        )
        await writer.commit()
    _log.info("login", user_id=current.id, family_id=record.family_id)
    return grant


# -- refresh grant and logout -----------------------------------------------------------------
async def _refuse_reuse(writer: AuthUnitOfWork, *, stored: RefreshToken, now: datetime) -> NoReturn:
    # Two parties hold this family (one of them stole it). Revoke all of it, and commit
    # that before refusing: this is the one refusal that must change state.
    revoked = await writer.refresh_tokens.revoke_family(stored.family_id, now)
    await writer.audit.record(
        actor=stored.user_id,
        action=AuditAction.REFRESH_TOKEN_REUSED,
        at=now,
        target=stored.family_id,
        outcome=Outcome.FAILURE,
        details={"session": stored.family_id, "tokens_revoked": revoked},
    )
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
        # The token and its user in one statement (the user is judged only after the token).
        found = await writer.refresh_tokens.get_with_owner(hash_refresh_token(refresh_token))
        if found is None:
            raise InvalidGrant
        stored, user = found
        state = stored.state(now)
        if state is RefreshTokenState.SPENT:
            await _refuse_reuse(writer, stored=stored, now=now)
        if state is not RefreshTokenState.USABLE:
            raise InvalidGrant
        if user is None or not user.may_sign_in:
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
            user=user,
            refresh_token=successor,
            token=token,
            scope=granted,
            signer=signer,
            policy=policy,
            now=now,
        )
        await writer.commit()
    return grant


async def revoke_refresh_family(
    *, uow: UnitOfWorkFactory, now: datetime, refresh_token: str
) -> None:
    """Logout: the token's whole family stops working, and its access tokens appear on the
    revocation list. Unknown tokens are ignored (RFC 7009 section 2.2), so a client cannot
    probe which tokens exist."""
    if len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
        return
    async with uow() as writer:
        stored = await writer.refresh_tokens.get_by_hash(hash_refresh_token(refresh_token))
        if stored is None:
            return
        revoked = await writer.refresh_tokens.revoke_family(stored.family_id, now)
        if revoked == 0:
            return  # already revoked: nothing changes, nothing to record
        await writer.audit.record(
            actor=stored.user_id,
            action=AuditAction.LOGGED_OUT,
            at=now,
            target=stored.family_id,
            details={"session": stored.family_id, "tokens_revoked": revoked},
        )
        await writer.commit()
    _log.info("logout", user_id=stored.user_id, family_id=stored.family_id)
