"""Logging in, finding the session of a request (renewing its access token when it is
about to expire), logging out, and deleting the sessions that are over."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flotilla_kit.clock import Clock, Sleep
from flotilla_kit.logs import get_logger
from flotilla_web.domain import (
    ApiFailed,
    GatewayUnavailable,
    NotLoggedIn,
    Session,
    SessionPolicy,
    Tokens,
    new_secret,
    valid_secret,
)
from flotilla_web.service_layer.locks import KeyedLocks
from flotilla_web.service_layer.ports import (
    AuthApi,
    RefreshRefused,
    TokenReader,
    UnitOfWorkFactory,
)

__all__ = ["SessionKeeper"]

_log = get_logger("flotilla.web.sessions")

# How long one instance may hold the right to spend a refresh token before another may
# try (a refresh answers in milliseconds; this covers a slow one).
_REFRESH_CLAIM = dt.timedelta(seconds=10)
# How often an instance whose access token has expired looks whether the instance that
# claimed the refresh has finished it, and how many times before it gives up.
_CLAIM_POLL_S = 0.05
_CLAIM_POLLS = int(_REFRESH_CLAIM.total_seconds() / _CLAIM_POLL_S)


@dataclass
class SessionKeeper:
    """The use cases of sessions, with what they need (one per app, from bootstrap)."""

    uow: UnitOfWorkFactory
    auth: AuthApi
    tokens: TokenReader
    policy: SessionPolicy
    clock: Clock
    sleep: Sleep

    def __post_init__(self) -> None:
        self._locks = KeyedLocks()

    async def log_in(self, *, username: str, password: str) -> tuple[str, Session]:
        """A new session (its cookie id and itself); LoginRefused, TooManyAttempts,
        GatewayUnavailable or ApiFailed from the auth service, nothing stored."""
        grant = await self.auth.password_grant(username, password)
        claims = await self.tokens.read(grant.access_token)
        session = self.policy.new(
            user_id=claims.subject,
            username=username,
            roles=claims.roles,
            tokens=Tokens(grant.access_token, grant.refresh_token, claims.expires_at),
            now=self.clock(),
        )
        session_id = new_secret()
        async with self.uow() as u:
            await u.sessions.add(session_id, session)
            await u.commit()
        _log.info("logged in", user_id=claims.subject)
        return session_id, session

    async def current(self, session_id: str | None) -> Session:
        """The session the cookie names, its access token good for a while yet; NotLoggedIn
        when there is none (unknown, malformed, over, or its refresh was refused)."""
        if not valid_secret(session_id):
            raise NotLoggedIn
        assert session_id is not None
        now = self.clock()
        async with self.uow(write=False) as u:
            session = await u.sessions.get(session_id)
        if session is None:
            raise NotLoggedIn
        if self.policy.is_over(session, now):
            await self._end(session_id, session)
            raise NotLoggedIn
        if self.policy.needs_refresh(session, now):
            session = await self._refreshed(session_id)
        if self.policy.needs_touch(session, now):
            async with self.uow() as u:
                await u.sessions.touch(session_id, now)
                await u.commit()
            session = session.seen(now)
        return session

    async def log_out(self, session_id: str | None) -> None:
        """The session is deleted and its refresh token revoked (the whole login, at the
        auth service); nothing happens for an unknown id."""
        if not valid_secret(session_id):
            return
        assert session_id is not None
        async with self.uow(write=False) as u:
            session = await u.sessions.get(session_id)
        if session is not None:
            await self._end(session_id, session)

    async def forget(self, session_id: str | None) -> None:
        """Delete the session without asking anyone (its token was refused already)."""
        if not valid_secret(session_id):
            return
        assert session_id is not None
        async with self.uow() as u:
            await u.sessions.delete(session_id)
            await u.commit()

    async def sweep(self) -> int:
        """Delete the sessions that are over; how many. Their refresh tokens are not
        revoked (nobody holds their ids any more); they expire at the auth service."""
        now = self.clock()
        async with self.uow() as u:
            deleted = await u.sessions.delete_over(
                now=now, idle_since=now - self.policy.idle_timeout
            )
            await u.commit()
        return deleted

    async def _end(self, session_id: str, session: Session) -> None:
        try:
            await self.auth.logout(session.tokens.refresh_token)
        except (GatewayUnavailable, ApiFailed) as error:
            # The session is deleted here anyway: its cookie opens nothing any more, and
            # the refresh token dies at its expiry at the auth service.
            _log.warning("could not revoke the session's refresh token", error=str(error))
        async with self.uow() as u:
            await u.sessions.delete(session_id)
            await u.commit()

    async def _refreshed(self, session_id: str) -> Session:
        # One refresh at a time per session in this process; `claim_refresh` makes it one
        # across every instance.
        async with self._locks.hold(session_id):
            for _ in range(_CLAIM_POLLS):
                now = self.clock()
                async with self.uow(write=False) as u:
                    session = await u.sessions.get(session_id)
                if session is None:
                    raise NotLoggedIn
                if not self.policy.needs_refresh(session, now):
                    return session  # renewed meanwhile, by this process or another
                async with self.uow() as u:
                    claimed = await u.sessions.claim_refresh(
                        session_id,
                        refresh_token=session.tokens.refresh_token,
                        now=now,
                        until=now + _REFRESH_CLAIM,
                    )
                    await u.commit()
                if claimed:
                    return await self._refresh(session_id, session)
                if session.tokens.access_expires_at > now:
                    return session  # still good: another instance is renewing it
                await self.sleep(_CLAIM_POLL_S)
        raise GatewayUnavailable("the session's access token is being renewed elsewhere")

    async def _refresh(self, session_id: str, session: Session) -> Session:
        now = self.clock()
        try:
            grant = await self.auth.refresh_grant(session.tokens.refresh_token)
        except RefreshRefused:
            _log.info("refresh refused: the session is over", user_id=session.user_id)
            await self.forget(session_id)
            raise NotLoggedIn from None
        except (GatewayUnavailable, ApiFailed):
            if session.tokens.access_expires_at > now:
                return session  # try again at a later request (once the claim has lapsed)
            raise
        claims = await self.tokens.read(grant.access_token)
        tokens = Tokens(grant.access_token, grant.refresh_token, claims.expires_at)
        async with self.uow() as u:
            await u.sessions.set_tokens(session_id, tokens, claims.roles)
            await u.commit()
        return session.with_tokens(tokens, claims.roles)
