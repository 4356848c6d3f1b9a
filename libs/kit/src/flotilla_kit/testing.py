"""Helpers for tests of services built on the kit (imported by tests only)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flotilla_kit.tokens import JwksCache, TokenVerifier

__all__ = ["TokenMinter", "running_server"]


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
