"""Helpers for tests of services built on the kit (imported by tests only)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import MetaData, create_engine, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from flotilla_kit.db import is_sqlite
from flotilla_kit.tokens import JwksCache, TokenVerifier

__all__ = ["JWT_ATTACKS", "REVOKED_SESSION", "TokenMinter", "create_tables", "running_server"]


async def create_tables(url: str, metadata: MetaData) -> None:
    """`metadata.create_all` on the database at `url` (tests that need tables without
    running a service's migrations)."""
    if is_sqlite(url):
        engine = create_engine(make_url(url).set(drivername="sqlite"))
        try:
            await asyncio.to_thread(metadata.create_all, engine)
        finally:
            engine.dispose()
        return
    async_engine = create_async_engine(url)
    try:
        async with async_engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    finally:
        await async_engine.dispose()


class TokenMinter:
    """Signs access tokens with a fresh Ed25519 key, and publishes that key as a JWKS.

    Tests that are not about the auth service use it to act as a given user.
    """

    issuer = "flotilla-auth"
    audience = "flotilla"

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        self.kid = "test-key-1"
        public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self._key.public_key()))
        self.jwks: dict[str, Any] = {
            "keys": [{**public, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]
        }

    def mint(
        self,
        subject: str = "user-1",
        roles: list[str] | None = None,
        *,
        ttl_s: int = 300,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
            "roles": roles if roles is not None else ["customer"],
            "scope": "",
        }
        payload.update(claims)
        header = {"kid": self.kid, "typ": "at+jwt", **(headers or {})}
        return jwt.encode(payload, self._key, algorithm="EdDSA", headers=header)

    def verifier(self) -> TokenVerifier:
        cache = JwksCache([])
        cache.load(self.jwks)
        return TokenVerifier(cache, issuer=self.issuer, audience=self.audience)


@contextlib.asynccontextmanager
async def running_server(config: uvicorn.Config, timeout_s: float = 10.0) -> AsyncIterator[None]:
    """Serve an ASGI app with uvicorn on a real socket for the duration of the block."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + timeout_s
    # uvicorn exposes no "started" event, only this flag.
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, object], payload: dict[str, object]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."


def _claims(minter: TokenMinter, **override: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": minter.issuer, "aud": minter.audience, "sub": "alice", "iat": now,
        "exp": now + 300, "jti": "j", "roles": ["customer"],
    }  # fmt: skip
    claims.update(override)
    return claims


def _hs256_with_public_key(minter: TokenMinter) -> str:
    public = minter.jwks["keys"][0]["x"]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": minter.kid}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(minter)).encode())}"
    )
    mac = hmac.new(public.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _foreign_key_same_kid(minter: TokenMinter) -> str:
    other = Ed25519PrivateKey.generate()
    return jwt.encode(
        _claims(minter), other, algorithm="EdDSA", headers={"kid": minter.kid, "typ": "at+jwt"}
    )


def _tampered(minter: TokenMinter) -> str:
    header, _, signature = minter.mint("alice").split(".")
    forged = _b64(json.dumps(_claims(minter, roles=["admin"])).encode())
    return f"{header}.{forged}.{signature}"


def _without(minter: TokenMinter, claim: str) -> str:
    token = minter.mint("alice")
    payload = jwt.decode(token, options={"verify_signature": False})
    payload.pop(claim)
    return jwt.encode(
        payload, minter._key, algorithm="EdDSA", headers={"kid": minter.kid, "typ": "at+jwt"}
    )


# An access token every verifier must refuse, by name: the RFC 8725 checklist as data.
# `REVOKED_SESSION` must be on the verifier's revocation list for the last case.
REVOKED_SESSION = "revoked-session"
JWT_ATTACKS: dict[str, Callable[[TokenMinter], str]] = {
    "alg none": lambda t: _unsigned({"alg": "none", "typ": "at+jwt", "kid": t.kid}, _claims(t)),
    "HS256 signed with the public key": _hs256_with_public_key,
    "unknown kid": lambda t: t.mint(headers={"kid": "nobody"}),
    "key not in JWKS under a known kid": _foreign_key_same_kid,
    "tampered payload": _tampered,
    "expired": lambda t: t.mint(ttl_s=-120),
    "nbf in the future": lambda t: t.mint(nbf=int(time.time()) + 3600),
    "wrong issuer": lambda t: t.mint(iss="someone-else"),
    "wrong audience": lambda t: t.mint(aud="another-api"),
    "missing exp": lambda t: _without(t, "exp"),
    "missing sub": lambda t: _without(t, "sub"),
    "missing iat": lambda t: _without(t, "iat"),
    "typ not at+jwt": lambda t: t.mint(headers={"typ": "JWT"}),
    "jku pointing elsewhere": lambda t: t.mint(headers={"jku": "https://evil.example/jwks"}),
    "embedded jwk": lambda t: t.mint(headers={"jwk": t.jwks["keys"][0]}),
    "oversized token": lambda t: t.mint(padding="x" * 5000),
    "not a JWT at all": lambda t: "hello.world",
    "roles not a list": lambda t: t.mint(roles=cast(list[str], "admin")),
    "revoked session": lambda t: t.mint(sid=REVOKED_SESSION),
}
