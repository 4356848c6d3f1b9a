"""In-memory fakes of the ports: the session keeper and the basket use cases run against
these in unit tests."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from flotilla_kit.testing import InMemoryUnitOfWork
from flotilla_web.domain import Basket, GatewayUnavailable, Session, SessionPolicy, Tokens
from flotilla_web.service_layer.ports import (
    ApiAnswer,
    Grant,
    LoginRefused,
    RefreshRefused,
    StreamedAnswer,
    TokenClaims,
)

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
POLICY = SessionPolicy(
    idle_timeout=dt.timedelta(minutes=30),
    absolute_timeout=dt.timedelta(hours=12),
    refresh_before=dt.timedelta(seconds=60),
    touch_every=dt.timedelta(seconds=60),
)
TTL = dt.timedelta(minutes=5)


@dataclass
class Row:
    session: Session
    claimed_until: dt.datetime | None = None


class FakeSessions:
    def __init__(self, store: dict[str, Row], undo: list[Callable[[], object]]) -> None:
        self._store = store
        self._undo = undo

    def _keep(self, session_id: str) -> None:
        old = self._store.get(session_id)
        if old is None:
            self._undo.append(lambda: self._store.pop(session_id, None))
        else:
            self._undo.append(lambda: self._store.__setitem__(session_id, old))

    async def add(self, session_id: str, session: Session) -> None:
        assert session_id not in self._store
        self._keep(session_id)
        self._store[session_id] = Row(session)

    async def get(self, session_id: str, *, for_update: bool = False) -> Session | None:
        row = self._store.get(session_id)
        return None if row is None else row.session

    async def delete(self, session_id: str) -> bool:
        self._keep(session_id)
        return self._store.pop(session_id, None) is not None

    async def touch(self, session_id: str, now: dt.datetime) -> None:
        self._keep(session_id)
        row = self._store[session_id]
        self._store[session_id] = replace(row, session=row.session.seen(now))

    async def set_basket(self, session_id: str, basket: Basket) -> None:
        self._keep(session_id)
        row = self._store[session_id]
        self._store[session_id] = replace(row, session=row.session.with_basket(basket))

    async def claim_refresh(
        self, session_id: str, *, refresh_token: str, now: dt.datetime, until: dt.datetime
    ) -> bool:
        row = self._store.get(session_id)
        if row is None or row.session.tokens.refresh_token != refresh_token:
            return False
        if row.claimed_until is not None and row.claimed_until > now:
            return False
        self._keep(session_id)
        self._store[session_id] = replace(row, claimed_until=until)
        return True

    async def set_tokens(self, session_id: str, tokens: Tokens, roles: frozenset[str]) -> None:
        self._keep(session_id)
        row = self._store[session_id]
        self._store[session_id] = Row(row.session.with_tokens(tokens, roles), None)

    async def delete_over(self, *, now: dt.datetime, idle_since: dt.datetime) -> int:
        over = [
            k
            for k, r in self._store.items()
            if r.session.expires_at <= now or r.session.last_seen_at <= idle_since
        ]
        for key in over:
            await self.delete(key)
        return len(over)


class FakeUnitOfWork(InMemoryUnitOfWork):
    def __init__(self, store: dict[str, Row], *, write: bool) -> None:
        super().__init__(write=write)
        self.sessions = FakeSessions(store, self.undo)


class FakeUow:
    def __init__(self) -> None:
        self.store: dict[str, Row] = {}

    def __call__(self, *, write: bool = True) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.store, write=write)


@dataclass
class FakeAuth:
    """The auth service: refresh tokens single use, a reuse refused; tokens are strings
    that `FakeTokens` reads (`at:<user>:<n>`)."""

    clock: Callable[[], dt.datetime]
    issued: int = 0
    refreshes: list[str] = field(default_factory=list)
    logouts: list[str] = field(default_factory=list)
    spent: set[str] = field(default_factory=set)
    down: bool = False
    gate: asyncio.Event | None = None
    # Set when a refresh arrives (before it waits for `gate`).
    refreshing: asyncio.Event = field(default_factory=asyncio.Event)
    expiry: dict[str, dt.datetime] = field(default_factory=dict)

    def _grant(self, user: str) -> Grant:
        self.issued += 1
        access = f"at:{user}:{self.issued}"
        self.expiry[access] = self.clock() + TTL
        return Grant(access, f"rt:{user}:{self.issued}")

    async def password_grant(self, username: str, password: str) -> Grant:
        if self.down:
            raise GatewayUnavailable("down")
        if password != "right":
            raise LoginRefused
        return self._grant(username)

    async def refresh_grant(self, refresh_token: str) -> Grant:
        self.refreshes.append(refresh_token)
        self.refreshing.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise GatewayUnavailable("down")
        if refresh_token in self.spent:
            raise RefreshRefused
        self.spent.add(refresh_token)
        return self._grant(refresh_token.split(":")[1])

    async def logout(self, refresh_token: str) -> None:
        self.logouts.append(refresh_token)
        if self.down:
            raise GatewayUnavailable("down")


@dataclass
class FakeTokens:
    auth: FakeAuth

    async def read(self, access_token: str) -> TokenClaims:
        user = access_token.split(":")[1]
        roles = frozenset({"support"} if user == "sam" else {"customer"})
        return TokenClaims(user, roles, self.auth.expiry[access_token])


@dataclass
class FakeApi:
    """The APIs behind the gateway: canned answers by (method, path)."""

    answers: dict[tuple[str, str], ApiAnswer] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)

    async def get(self, path: str, *, params: Any = None) -> ApiAnswer:
        self.calls.append(("GET", path, params))
        return self.answers.get(("GET", path), ApiAnswer(404))

    async def post(self, path: str, *, json: Any = None, headers: Any = None) -> ApiAnswer:
        self.calls.append(("POST", path, json))
        return self.answers.get(("POST", path), ApiAnswer(404))

    async def stream(self, path: str, *, accept: str) -> StreamedAnswer:
        raise NotImplementedError
