"""Signing-key rotation: staged keys are published before they sign, old tokens keep
verifying while their key is retired, retired keys leave the JWKS after their retention,
and instances promoting at once end with one active key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

import httpx
import jwt
import pytest
from fastapi import FastAPI

from flotilla_auth.adapters.unit_of_work import SqlAuthUnitOfWork, SqlUnitOfWorkFactory
from flotilla_auth.bootstrap import Maintenance, build_runtime, create_app, migrate
from flotilla_auth.domain.signing_keys import SigningKey
from flotilla_auth.entrypoints.cli import app as cli_app
from flotilla_auth.service_layer.signing_keys import (
    ensure_active_signing_key,
    promote_staged_key,
    stage_signing_key,
)
from flotilla_auth.settings import AuthSettings
from flotilla_kit.db import is_sqlite
from flotilla_kit.tokens import JwksCache, TokenError, TokenVerifier

from .helpers import (
    MovableClock,
    access_token,
    add_user,
    bearer,
    cheap_hasher,
    cli_runner,
    components,
    printed,
    table_rows,
)

PUBLISH_DELAY_S = 60


@pytest.fixture
def rotating(settings: AuthSettings) -> AuthSettings:
    return settings.model_copy(update={"key_publish_delay_s": PUBLISH_DELAY_S})


@pytest.fixture
async def rotating_app(rotating: AuthSettings, clock: MovableClock) -> AsyncIterator[FastAPI]:
    application = create_app(rotating, password_hasher=cheap_hasher(), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def jwks_kids(client: httpx.AsyncClient) -> list[str]:
    return [key["kid"] for key in (await client.get("/.well-known/jwks.json")).json()["keys"]]


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


async def verify_with_published_keys(client: httpx.AsyncClient, token: str) -> str:
    """What any other service does: verify against the JWKS as published now."""
    cache = JwksCache([])
    cache.load((await client.get("/.well-known/jwks.json")).json())
    principal = await TokenVerifier(cache, issuer="flotilla-auth", audience="flotilla").verify(
        token
    )
    return principal.subject


async def test_rotation_publishes_first_signs_later_and_keeps_old_tokens_valid(
    rotating_app: FastAPI, rotating: AuthSettings, clock: MovableClock, database_url: str
) -> None:
    maintenance: Maintenance = rotating_app.state.maintenance
    parts = components(rotating_app)
    user = await add_user(rotating_app, "alice")
    # Start in the past, so that every token below is current for the kit's verifier, which
    # reads the real clock.
    clock.advance(-(PUBLISH_DELAY_S + 10))
    transport = httpx.ASGITransport(app=rotating_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as client:
        old_token = await access_token(client)
        old_kid = kid_of(old_token)

        staged = await stage_signing_key(uow=parts.uow, keys=parts.keys, now=clock())
        await maintenance.tick()

        # Published before it signs: verifiers can fetch it while tokens still use the old key.
        assert await jwks_kids(client) == [old_kid, staged.kid]
        assert kid_of(await access_token(client)) == old_kid

        clock.advance(PUBLISH_DELAY_S - 1)
        await maintenance.tick()
        assert kid_of(await access_token(client)) == old_kid

        clock.advance(1)
        await maintenance.tick()
        new_token = await access_token(client)

        assert kid_of(new_token) == staged.kid
        assert await jwks_kids(client) == [staged.kid, old_kid]  # the old one, retired
        for token in (old_token, new_token):
            assert await verify_with_published_keys(client, token) == user.id
            assert (await client.get("/api/v1/auth/me", headers=bearer(token))).status_code == 200

        # Retention: the token lifetime plus 60 s after retirement, then gone.
        clock.advance(rotating.access_token_ttl_s + 60 - 1)
        await maintenance.tick()
        assert await jwks_kids(client) == [staged.kid, old_kid]
        clock.advance(1)
        await maintenance.tick()
        assert await jwks_kids(client) == [staged.kid]
        with pytest.raises(TokenError, match="unknown kid"):
            await verify_with_published_keys(client, old_token)
        # The instance's own verifier (for /me) follows too. (A token it verified before
        # stays cached until it expires, which it has by now outside this test's clock.)
        own: TokenVerifier = rotating_app.state.token_verifier
        assert await own.jwks.key_for(old_kid) is None
        assert await own.jwks.key_for(staged.kid) is not None

    rows = (await table_rows(database_url))["signing_keys"]
    assert {(row["kid"], row["status"]) for row in rows} == {
        (old_kid, "retired"),
        (staged.kid, "active"),
    }
    events = [
        (e["action"], e["target"])
        for e in (await table_rows(database_url))["audit_events"]
        if e["action"].startswith("key.")
    ]
    assert events[1:] == [
        ("key.staged", staged.kid),
        ("key.retired", old_kid),
        ("key.activated", staged.kid),
    ]


async def test_the_timer_stages_a_successor_once_the_active_key_is_old(
    rotating_app: FastAPI, rotating: AuthSettings, clock: MovableClock
) -> None:
    maintenance: Maintenance = rotating_app.state.maintenance
    first = (await maintenance.tick()).active

    clock.advance(rotating.key_rotation_period_s - 1)
    assert [k.kid for k in (await maintenance.tick()).published] == [first.kid]

    clock.advance(1)
    staged = (await maintenance.tick()).published
    assert [k.status.value for k in staged] == ["active", "next"]

    clock.advance(PUBLISH_DELAY_S)
    ring = await maintenance.tick()
    assert ring.active.kid == staged[1].kid
    assert components(rotating_app).signer.kid == ring.active.kid


class _RacingKeys(SqlAuthUnitOfWork):
    """Holds every promoter after it read the staged key until all have read it, so they
    all try the compare-and-set (PostgreSQL only: SQLite writers are serialised)."""

    barrier: asyncio.Barrier

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        inner = self.signing_keys
        barrier = self.barrier

        class Held:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            async def get_next(self) -> SigningKey | None:
                key = await inner.get_next()
                await barrier.wait()
                return key

        self.signing_keys = Held()  # type: ignore[assignment]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)


@pytest.mark.parametrize("instances", [3])
async def test_instances_promoting_at_once_end_with_one_active_key(
    settings: AuthSettings, database_url: str, instances: int
) -> None:
    await asyncio.to_thread(migrate, settings)
    runtimes = [build_runtime(settings, password_hasher=cheap_hasher()) for _ in range(instances)]
    try:
        parts = runtimes[0].components
        now = parts.clock()
        first = await ensure_active_signing_key(uow=parts.uow, keys=parts.keys, now=now)
        staged = await stage_signing_key(uow=parts.uow, keys=parts.keys, now=now)
        due = now + timedelta(seconds=settings.key_publish_delay_s)

        barrier = asyncio.Barrier(instances)

        def factory(runtime_index: int) -> Any:
            database = runtimes[runtime_index].database
            if is_sqlite(database_url):
                return SqlUnitOfWorkFactory(database)

            def make(*, write: bool = True) -> SqlAuthUnitOfWork:
                uow = _RacingKeys(database, write=write)
                uow.barrier = barrier
                return uow

            return make

        promoted = await asyncio.gather(
            *(
                promote_staged_key(uow=uow, now=due, schedule=None)
                for uow in [factory(i) for i in range(instances)]
            )
        )
    finally:
        for runtime in runtimes:
            await runtime.database.dispose()

    assert [key.kid for key in promoted if key is not None] == [staged.kid]
    rows = await table_rows(database_url)
    assert {(r["kid"], r["status"]) for r in rows["signing_keys"]} == {
        (first.kid, "retired"),
        (staged.kid, "active"),
    }
    actions = [e["action"] for e in rows["audit_events"]]
    assert actions.count("key.activated") == 2  # the first key, then the staged one once
    assert actions.count("key.retired") == 1


def test_rotate_keys_command_stages_then_promotes_on_demand(
    settings: AuthSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = cli_runner(settings, monkeypatch)

    staged = runner.invoke(cli_app, ["rotate-keys"])
    again = runner.invoke(cli_app, ["rotate-keys"])
    emergency = runner.invoke(cli_app, ["rotate-keys", "--now"])

    assert staged.exit_code == 0, staged.output
    first = printed(staged)
    assert set(first) == {"staged", "activates_after"}
    assert printed(again) == first  # one staged key at a time
    # Staged now, signing after the publish delay; --now activated it at once.
    waited = datetime.fromisoformat(first["activates_after"]) - datetime.fromisoformat(
        printed(emergency)["activates_after"]
    )
    assert timedelta(seconds=settings.key_publish_delay_s - 10) < waited
    assert waited <= timedelta(seconds=settings.key_publish_delay_s)
    assert printed(emergency)["activated"] == first["staged"]
    rows = asyncio.run(table_rows(settings.sqlalchemy_url))["signing_keys"]
    assert sorted(row["status"] for row in rows) == ["active", "retired"]
    assert next(r["kid"] for r in rows if r["status"] == "active") == first["staged"]
