"""What the use cases need from the world, as Protocols the adapters implement: the
session store (in the unit of work), the auth service's token endpoint and the APIs
behind the gateway, called with the user's token."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from flotilla_kit.unit_of_work import UnitOfWork
from flotilla_kit.unit_of_work import UnitOfWorkFactory as KitUnitOfWorkFactory
from flotilla_web.domain import Basket, Session, Tokens

__all__ = [
    "ApiAnswer",
    "AuthApi",
    "Grant",
    "LoginRefused",
    "RefreshRefused",
    "Sessions",
    "StreamedAnswer",
    "TokenClaims",
    "TokenReader",
    "TooManyAttempts",
    "UnitOfWorkFactory",
    "UserApi",
    "WebUnitOfWork",
]


class Sessions(Protocol):
    """Sessions by the id their cookie carries. The store keeps only a hash of the id,
    so what it holds cannot be turned back into a cookie."""

    async def add(self, session_id: str, session: Session) -> None: ...

    async def get(self, session_id: str, *, for_update: bool = False) -> Session | None:
        """`for_update`: the row stays locked until the transaction ends (a read that is
        followed by a write of the same session)."""
        ...

    async def delete(self, session_id: str) -> bool: ...

    async def touch(self, session_id: str, now: dt.datetime) -> None: ...

    async def set_basket(self, session_id: str, basket: Basket) -> None: ...

    async def claim_refresh(
        self, session_id: str, *, refresh_token: str, now: dt.datetime, until: dt.datetime
    ) -> bool:
        """Whether this caller may spend `refresh_token` now: true for one caller only
        (per token, until `until`), so two instances never spend it both (a spent refresh
        token presented again revokes the whole session at the auth service)."""
        ...

    async def set_tokens(self, session_id: str, tokens: Tokens, roles: frozenset[str]) -> None:
        """The refreshed tokens; the claim is over."""
        ...

    async def delete_over(self, *, now: dt.datetime, idle_since: dt.datetime) -> int:
        """Delete the sessions past their end or unused since `idle_since`; how many."""
        ...


class WebUnitOfWork(UnitOfWork, Protocol):
    @property
    def sessions(self) -> Sessions: ...


UnitOfWorkFactory = KitUnitOfWorkFactory[WebUnitOfWork]


@dataclass(frozen=True, slots=True)
class Grant:
    """An answer of the token endpoint."""

    access_token: str
    refresh_token: str


class LoginRefused(Exception):
    """Wrong user name or password (or a locked or disabled user: the same answer)."""


class TooManyAttempts(Exception):
    def __init__(self, retry_after_s: int | None) -> None:
        super().__init__("too many failed logins")
        self.retry_after_s = retry_after_s


class RefreshRefused(Exception):
    """The refresh token is spent, expired or revoked: the session is over."""


class AuthApi(Protocol):
    """The auth service's token and logout endpoints, through the gateway."""

    async def password_grant(self, username: str, password: str) -> Grant:
        """LoginRefused, TooManyAttempts, or GatewayUnavailable / ApiFailed."""
        ...

    async def refresh_grant(self, refresh_token: str) -> Grant:
        """RefreshRefused, or GatewayUnavailable / ApiFailed."""
        ...

    async def logout(self, refresh_token: str) -> None: ...


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    roles: frozenset[str]
    expires_at: dt.datetime


class TokenReader(Protocol):
    async def read(self, access_token: str) -> TokenClaims:
        """The claims of a token the auth service just issued (ApiFailed if unreadable)."""
        ...


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """An answer of an API behind the gateway: its status, its JSON body (None when it
    had none or was not JSON) and its headers (lower-case names)."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def problem_type(self) -> str:
        """The last segment of a problem's `type` (`insufficient-funds`), or ""."""
        if isinstance(self.body, dict) and isinstance(self.body.get("type"), str):
            return str(self.body["type"]).rstrip("/").rsplit("/", 1)[-1]
        return ""

    @property
    def detail(self) -> str:
        """What a problem says (its detail, else its title), or ""."""
        if isinstance(self.body, dict):
            for name in ("detail", "title"):
                value = self.body.get(name)
                if isinstance(value, str) and value:
                    return value
        return ""


@dataclass(frozen=True, slots=True)
class StreamedAnswer:
    """A streamed answer (a PDF): read `chunks` to the end (or `close` it)."""

    status: int
    headers: Mapping[str, str]
    chunks: AsyncIterator[bytes]
    closer: Callable[[], Awaitable[None]]

    async def close(self) -> None:
        await self.closer()


class UserApi(Protocol):
    """The APIs behind the gateway, called as the logged-in user (their access token on
    every call). A 401 raises NotLoggedIn (the token was revoked: the session is over);
    no answer raises GatewayUnavailable; any other status is the caller's to read."""

    async def get(
        self, path: str, *, params: Mapping[str, str | int] | None = None
    ) -> ApiAnswer: ...

    async def post(
        self,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> ApiAnswer: ...

    async def stream(self, path: str, *, accept: str) -> StreamedAnswer: ...
