"""Access-token (JWT) verification against the auth service's cached JWKS.

The rules follow RFC 8725: the algorithm list is pinned (and must match the key's own
`alg`), `typ` must be `at+jwt`, `exp iat iss aud sub` are required, clock skew is bounded,
the key is chosen by `kid` from the JWKS we were configured with, and header parameters
that point elsewhere (`jku`, `x5u`, `jwk`) are never followed. A token over the size limit
is refused before it is parsed. Verified tokens are cached until they expire, so the
signature is checked once per token per process, not once per request.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from flotilla_kit.logs import get_logger
from flotilla_kit.rbac import permissions_of
from flotilla_kit.revocations import RevocationList

__all__ = ["JwksCache", "Principal", "TokenError", "TokenVerifier"]

_log = get_logger("flotilla.tokens")
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c")


class TokenError(Exception):
    """The token is not acceptable; the message says why (safe to log, not to show)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proven by a verified access token."""

    subject: str
    roles: frozenset[str]
    token_id: str
    expires_at: float
    scopes: frozenset[str] = frozenset()
    permissions: frozenset[str] = field(default=frozenset())
    # The login session (refresh-token family) the token belongs to; None for services.
    session_id: str | None = None
    # The key that signed the token: when it leaves the JWKS, its tokens leave the cache.
    key_id: str = ""

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], key_id: str = "") -> Principal:
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise TokenError("claim 'roles' must be a list of strings")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise TokenError("claim 'scope' must be a string")
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise TokenError("claim 'sub' must be a non-empty string")
        session = claims.get("sid")
        if session is not None and not isinstance(session, str):
            raise TokenError("claim 'sid' must be a string")
        scopes = frozenset(scope.split())
        granted = permissions_of(roles)
        return cls(
            subject=subject,
            roles=frozenset(roles),
            token_id=str(claims.get("jti", "")),
            expires_at=float(claims["exp"]),
            scopes=scopes,
            # A token asked for a narrower scope can do only that much.
            permissions=granted & scopes if scopes else granted,
            session_id=session,
            key_id=key_id,
        )

    def can(self, permission: str) -> bool:
        return permission in self.permissions


class JwksCache:
    """The signing keys of the auth service, by `kid`.

    An unknown `kid` triggers a refetch, at most once per `min_refresh_s`, so a flood of
    tokens with made-up `kid`s cannot turn into a flood of requests to the auth service.
    After a failed fetch (auth not up yet) the next try may come sooner, after
    `retry_after_failure_s`.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        ssl_context: ssl.SSLContext | None = None,
        min_refresh_s: float = 10.0,
        retry_after_failure_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> None:
        self._urls = list(urls)
        self._ssl = ssl_context
        self._min_refresh_s = min_refresh_s
        self._retry_after_failure_s = retry_after_failure_s
        self._timeout_s = timeout_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._next_fetch_at = -float("inf")
        self._lock = asyncio.Lock()

    def load(self, jwks: Mapping[str, Any]) -> None:
        """Replace the keys with those of a JWKS document; keys we cannot use are skipped."""
        keys: dict[str, jwt.PyJWK] = {}
        for entry in jwks.get("keys", []):
            kid, alg = entry.get("kid"), entry.get("alg")
            if (
                not isinstance(kid, str)
                or not isinstance(alg, str)
                or entry.get("use", "sig") != "sig"
            ):
                continue
            try:
                keys[kid] = jwt.PyJWK(entry, algorithm=alg)
            except jwt.PyJWTError:
                _log.warning("skipping unusable key in JWKS", kid=kid)
        self._keys = keys

    async def refresh(self) -> None:
        if not self._urls:
            return
        verify: ssl.SSLContext | bool = self._ssl if self._ssl is not None else True
        last_error: Exception | None = None
        async with httpx.AsyncClient(verify=verify, timeout=self._timeout_s) as client:
            for url in self._urls:
                try:
                    response = await client.get(url)
                    response.raise_for_status()
                    self.load(response.json())
                    self._next_fetch_at = time.monotonic() + self._min_refresh_s
                    return
                except (httpx.HTTPError, ValueError) as exc:
                    last_error = exc
        self._next_fetch_at = time.monotonic() + self._retry_after_failure_s
        _log.warning("could not fetch JWKS", error=repr(last_error))

    def has(self, kid: str) -> bool:
        return kid in self._keys

    async def run(self, every_s: float = 300.0) -> None:
        """Refetch now and then, so keys the auth service stopped publishing (retired
        after all their tokens expired) leave this cache too. Runs until cancelled."""
        while True:
            await asyncio.sleep(every_s)
            async with self._lock:
                await self.refresh()

    async def key_for(self, kid: str) -> jwt.PyJWK | None:
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._keys.get(kid)
            if key is None and time.monotonic() >= self._next_fetch_at:
                await self.refresh()
                key = self._keys.get(kid)
        return key


class TokenVerifier:
    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = ("EdDSA",),
        leeway_s: int = 30,
        max_token_bytes: int = 4096,
        cache_size: int = 10_000,
        revocations: RevocationList | None = None,
    ) -> None:
        self.jwks = jwks
        self.revocations = revocations or RevocationList()
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway_s = leeway_s
        self._max_token_bytes = max_token_bytes
        self._cache_size = cache_size
        self._verified: dict[str, Principal] = {}

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before and still good, without awaiting;
        None when the token must go through `verify` (new, expired or revoked)."""
        principal = self._verified.get(token)
        if principal is None:
            return None
        if (
            principal.expires_at + self._leeway_s <= time.time()
            or self.revocations.revoked(principal.session_id)
            or not self.jwks.has(principal.key_id)
        ):
            return None
        return principal

    async def verify(self, token: str) -> Principal:
        principal = self.cached(token)
        if principal is not None:
            return principal
        self._verified.pop(token, None)
        principal = await self._verify_uncached(token)
        if self.revocations.revoked(principal.session_id):
            raise TokenError("the session was revoked")
        if len(self._verified) >= self._cache_size:
            self._evict(time.time())
        self._verified[token] = principal
        return principal

    def _evict(self, now: float) -> None:
        expired = [t for t, p in self._verified.items() if p.expires_at + self._leeway_s <= now]
        for token in expired:
            del self._verified[token]
        while len(self._verified) >= self._cache_size:
            del self._verified[next(iter(self._verified))]  # oldest first

    async def _verify_uncached(self, token: str) -> Principal:
        if len(token) > self._max_token_bytes:
            raise TokenError("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self._algorithms:
            raise TokenError(f"algorithm {alg!r} not allowed")
        if header.get("typ") != "at+jwt":
            raise TokenError("typ must be at+jwt")
        if any(name in header for name in _FORBIDDEN_HEADERS):
            raise TokenError("token names its own key source; refused")
        if not isinstance(kid, str) or not kid:
            raise TokenError("kid missing")
        key = await self.jwks.key_for(kid)
        if key is None:
            raise TokenError("unknown kid")
        if key.algorithm_name != alg:
            raise TokenError("algorithm does not match the key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from exc
        return Principal.from_claims(claims, key_id=kid)
