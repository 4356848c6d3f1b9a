"""The session store on both backends: `migrate` builds exactly the tables the code
declares; a session round-trips; only one caller may spend a refresh token at a time
(the claim is a compare-and-set in the database, so it holds across instances); a row
cannot be opened with another cookie; sessions that are over are swept."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from flotilla_kit.db import Database, Query
from flotilla_web.adapters import SqlUnitOfWorkFactory, lookup_key, metadata
from flotilla_web.adapters.tables import sessions
from flotilla_web.domain import Basket, Session, SessionPolicy, Tokens, new_secret
from services.web.tests.integration.conftest import either_database

# The session store on both databases (the pages elsewhere run on SQLite only).
database_url = pytest.fixture(params=["sqlite", "postgres"])(either_database)

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
POLICY = SessionPolicy(
    idle_timeout=dt.timedelta(minutes=30),
    absolute_timeout=dt.timedelta(hours=12),
    refresh_before=dt.timedelta(seconds=60),
    touch_every=dt.timedelta(seconds=60),
)


def _of(cookie: str) -> ColumnElement[bool]:
    return sessions.c.id_hash == lookup_key(cookie)


def _migrate(database_url: str) -> None:
    """The service's own command, as an operator runs it."""
    env = {**os.environ, "FLOTILLA_DATABASE_URL": database_url, "FLOTILLA_PROFILE": "test"}
    done = subprocess.run(
        [sys.executable, "-m", "flotilla_web", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _session(refresh: str = "rt-1", *, at: dt.datetime = NOW) -> Session:
    return POLICY.new(
        user_id="user-alice",
        username="alice",
        roles=frozenset({"customer"}),
        tokens=Tokens("at-1", refresh, at + dt.timedelta(minutes=5)),
        now=at,
    )


@pytest.fixture
async def uow(database_url: str) -> AsyncIterator[SqlUnitOfWorkFactory]:
    _migrate(database_url)
    database = Database(database_url)
    try:
        yield SqlUnitOfWorkFactory(database)
    finally:
        await database.dispose()


async def test_migrate_builds_what_the_code_declares(database_url: str) -> None:
    _migrate(database_url)
    _migrate(database_url)  # again: nothing left to do
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await engine.dispose()


async def test_a_session_round_trips_and_changes_in_parts(uow: SqlUnitOfWorkFactory) -> None:
    cookie, session = new_secret(), _session()
    async with uow() as u:
        await u.sessions.add(cookie, session)
        await u.commit()
    async with uow(write=False) as u:
        assert await u.sessions.get(cookie) == session
    basket = Basket().add("prd_apple", 2).checked_out("key-1", "order-1").add("prd_pear", 1)
    later = NOW + dt.timedelta(minutes=3)
    tokens = Tokens("at-2", "rt-2", later + dt.timedelta(minutes=5))
    async with uow() as u:
        await u.sessions.set_basket(cookie, basket)
        await u.sessions.touch(cookie, later)
        await u.sessions.set_tokens(cookie, tokens, frozenset({"customer", "support"}))
        await u.commit()
    async with uow(write=False) as u:
        found = await u.sessions.get(cookie, for_update=True)
    assert found == session.with_basket(basket).seen(later).with_tokens(
        tokens, frozenset({"customer", "support"})
    )


async def test_a_row_sealed_for_another_id_does_not_open(uow: SqlUnitOfWorkFactory) -> None:
    cookie, other = new_secret(), new_secret()
    async with uow() as u:
        await u.sessions.add(cookie, _session())
        await u.sessions.add(other, _session())
        await u.commit()
    # Someone who can write the table copies one session's sealed tokens into another row.
    async with uow.database.transaction() as tx:
        row = await tx.first(Query(select(sessions).where(_of(cookie))))
        assert row is not None
        await tx.execute(
            Query(update(sessions).where(_of(other)).values(sealed_tokens=row.sealed_tokens))
        )
        await tx.commit()
    async with uow(write=False) as u:
        assert await u.sessions.get(other) is None  # tampered: refused, as if unknown
        assert await u.sessions.get(cookie) is not None
        assert await u.sessions.get(new_secret()) is None


async def test_one_claim_at_a_time_per_refresh_token(uow: SqlUnitOfWorkFactory) -> None:
    cookie = new_secret()
    async with uow() as u:
        await u.sessions.add(cookie, _session("rt-1"))
        await u.commit()
    until = NOW + dt.timedelta(seconds=10)

    async def claim(token: str, at: dt.datetime) -> bool:
        async with uow() as u:
            claimed = await u.sessions.claim_refresh(
                cookie, refresh_token=token, now=at, until=until
            )
            await u.commit()
        return claimed

    assert await claim("rt-1", NOW) is True
    assert await claim("rt-1", NOW) is False  # another instance, meanwhile
    assert await claim("rt-1", until) is True  # the first one's claim lapsed
    async with uow() as u:
        await u.sessions.set_tokens(cookie, Tokens("at-2", "rt-2", until), frozenset())
        await u.commit()
    assert await claim("rt-1", until) is False  # a spent token: nobody may claim it
    assert await claim("rt-2", NOW) is True  # the new one: at once (set_tokens ended the claim)


async def test_sweeping_deletes_only_the_sessions_that_are_over(uow: SqlUnitOfWorkFactory) -> None:
    fresh, idle, old = new_secret(), new_secret(), new_secret()
    async with uow() as u:
        await u.sessions.add(fresh, _session(at=NOW + dt.timedelta(hours=1)))
        await u.sessions.add(idle, _session())
        await u.sessions.add(old, _session())
        await u.sessions.touch(fresh, NOW + dt.timedelta(hours=11, minutes=50))
        await u.sessions.touch(old, NOW + dt.timedelta(hours=11, minutes=59))
        await u.commit()
    now = NOW + dt.timedelta(hours=12)  # `old` is at its absolute end, `idle` unused for 12 h
    async with uow() as u:
        deleted = await u.sessions.delete_over(now=now, idle_since=now - POLICY.idle_timeout)
        await u.commit()
    assert deleted == 2
    async with uow(write=False) as u:
        assert await u.sessions.get(fresh) is not None
        assert await u.sessions.get(idle) is None
        assert await u.sessions.get(old) is None
