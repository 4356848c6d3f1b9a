"""JWKS, /me, readiness, and signing-key creation by instances starting together."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import httpx
import pytest
from fastapi import FastAPI

from flotilla_auth.adapters.unit_of_work import SqlAuthUnitOfWork, SqlUnitOfWorkFactory
from flotilla_auth.bootstrap import Runtime, build_runtime, create_app, migrate
from flotilla_auth.domain.signing_keys import SigningKey
from flotilla_auth.service_layer.ports import KeyMaterial, TokenSigner, UnitOfWorkFactory
from flotilla_auth.service_layer.signing_keys import ensure_active_signing_key
from flotilla_auth.settings import AuthSettings
from flotilla_kit.db import is_sqlite

from .helpers import add_user, cheap_hasher, password_grant, table_rows


async def test_jwks_publishes_the_active_public_key(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    response = await client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=60"
    [key] = response.json()["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    [row] = (await table_rows(database_url))["signing_keys"]
    assert key["kid"] == row["kid"]
    assert row["status"] == "active"
    assert "ENCRYPTED" in row["private_key_pem"].splitlines()[0]  # PKCS#8, sealed
    assert "d" not in key  # never the private part


async def test_me_returns_the_caller(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await add_user(app, "Alice", roles=("support", "customer"))
    token = (await password_grant(client)).json()["access_token"]

    response = await client.get("/api/v1/auth/me", headers={"authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert response.json() == {"id": user.id, "username": "alice", "roles": ["customer", "support"]}


async def test_me_refuses_missing_foreign_and_stale_tokens(
    app: FastAPI,
    client: httpx.AsyncClient,
    tokens: Any,  # the root conftest's TokenMinter, whose module cannot be imported
) -> None:
    await add_user(app, "alice")
    token = (await password_grant(client)).json()["access_token"]
    foreign = tokens.mint("someone")

    no_token = await client.get("/api/v1/auth/me")
    signed_elsewhere = await client.get(
        "/api/v1/auth/me", headers={"authorization": f"Bearer {foreign}"}
    )
    await add_user(app, "alice", disabled=True)
    disabled_since = await client.get(
        "/api/v1/auth/me", headers={"authorization": f"Bearer {token}"}
    )

    for response in (no_token, signed_elsewhere, disabled_since):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_readyz_waits_for_the_signing_key(settings: AuthSettings) -> None:
    app = create_app(settings, password_hasher=cheap_hasher())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as client:
        before_start = await client.get("/readyz")
        token_before_start = await password_grant(client)
        async with app.router.lifespan_context(app):
            started = await client.get("/readyz")

    assert before_start.status_code == 503
    assert before_start.json()["checks"]["signing_key"] == "failing"
    assert token_before_start.status_code == 503
    assert started.status_code == 200
    assert started.json()["checks"] == {"database": "ok", "signing_key": "ok"}


async def test_two_instances_starting_together_share_one_active_key(
    settings: AuthSettings, database_url: str
) -> None:
    first = create_app(settings, password_hasher=cheap_hasher())
    second = create_app(settings, password_hasher=cheap_hasher())

    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(
            stack.enter_async_context(first.router.lifespan_context(first)),
            stack.enter_async_context(second.router.lifespan_context(second)),
        )
        await add_user(first, "alice")
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=first), base_url="http://first"
            ) as via_first,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=second), base_url="http://second"
            ) as via_second,
        ):
            token = (await password_grant(via_first)).json()["access_token"]
            me = await via_second.get(
                "/api/v1/auth/me", headers={"authorization": f"Bearer {token}"}
            )
            jwks = [(await c.get("/.well-known/jwks.json")).json() for c in (via_first, via_second)]

    rows = (await table_rows(database_url))["signing_keys"]
    assert [row["status"] for row in rows] == ["active"]
    assert jwks[0] == jwks[1] == {"keys": [jwks[0]["keys"][0]]}
    assert me.status_code == 200


class _RacingUnitOfWork:
    """Holds writers that found no active key until all have looked, so they all insert."""

    def __init__(self, inner: SqlAuthUnitOfWork, barrier: asyncio.Barrier | None) -> None:
        self._inner = inner
        self._barrier = barrier

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        self.users = self._inner.users
        self.refresh_tokens = self._inner.refresh_tokens
        self.login_throttles = self._inner.login_throttles
        self.client_assertions = self._inner.client_assertions
        self.audit = self._inner.audit
        self.signing_keys = self
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)

    async def commit(self) -> None:
        await self._inner.commit()

    # The signing-key repository, with a pause after a read that found nothing.
    async def get_active(self) -> SigningKey | None:
        key = await self._inner.signing_keys.get_active()
        if key is None and self._barrier is not None:
            await self._barrier.wait()
        return key

    async def get_next(self) -> SigningKey | None:
        return await self._inner.signing_keys.get_next()

    async def add(self, key: SigningKey) -> None:
        await self._inner.signing_keys.add(key)

    async def retire(self, kid: str, at: datetime) -> bool:
        return await self._inner.signing_keys.retire(kid, at)

    async def activate(self, kid: str, at: datetime) -> bool:
        return await self._inner.signing_keys.activate(kid, at)

    async def list_all(self) -> list[SigningKey]:
        return list(await self._inner.signing_keys.list_all())


class _CountingKeys:
    def __init__(self, inner: KeyMaterial) -> None:
        self._inner = inner
        self.generated = 0

    def generate(self, *, now: datetime) -> SigningKey:
        self.generated += 1
        return self._inner.generate(now=now)

    def signer_for(self, key: SigningKey) -> TokenSigner:
        return self._inner.signer_for(key)


@pytest.mark.parametrize("instances", [4])
async def test_instances_that_all_find_no_key_end_with_one(
    settings: AuthSettings, database_url: str, instances: int
) -> None:
    await asyncio.to_thread(migrate, settings)
    runtimes = [build_runtime(settings, password_hasher=cheap_hasher()) for _ in range(instances)]
    # On PostgreSQL every instance reads "no key" before any inserts, so all but one hit the
    # unique marker. SQLite writers take the lock before reading (BEGIN IMMEDIATE), so they
    # cannot interleave like that; holding them would only deadlock the test.
    barrier = None if is_sqlite(database_url) else asyncio.Barrier(instances)
    keys = _CountingKeys(runtimes[0].components.keys)

    def racing(runtime: Runtime) -> UnitOfWorkFactory:
        sql = SqlUnitOfWorkFactory(runtime.database)

        def factory(*, write: bool = True) -> _RacingUnitOfWork:
            return _RacingUnitOfWork(sql(write=write), barrier if write else None)

        return factory

    try:
        found = await asyncio.gather(
            *(
                ensure_active_signing_key(
                    uow=racing(runtime), keys=keys, now=runtime.components.clock()
                )
                for runtime in runtimes
            )
        )
    finally:
        for runtime in runtimes:
            await runtime.database.dispose()

    assert len({key.kid for key in found}) == 1
    rows = (await table_rows(database_url))["signing_keys"]
    assert [(row["kid"], row["status"]) for row in rows] == [(found[0].kid, "active")]
    if barrier is not None:
        assert keys.generated == instances  # the race really happened
