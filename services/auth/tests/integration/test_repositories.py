"""The SQL repositories' combined reads, against real databases: each statement that
stands for two must give what the two gave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from flotilla_auth.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_auth.bootstrap import migrate
from flotilla_auth.domain.login_protection import FailureCounter
from flotilla_auth.domain.refresh_tokens import RefreshToken
from flotilla_auth.domain.users import User
from flotilla_auth.settings import AuthSettings
from flotilla_kit.db import Database

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def uow(settings: AuthSettings) -> AsyncIterator[SqlUnitOfWorkFactory]:
    await asyncio.to_thread(migrate, settings)
    database = Database(settings.sqlalchemy_url)
    try:
        yield SqlUnitOfWorkFactory(database)
    finally:
        await database.dispose()


def _counter(key: str, failures: int) -> FailureCounter:
    return FailureCounter(
        key=key,
        failures=failures,
        window_started_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
        locked_until=NOW + timedelta(minutes=1) if failures > 1 else None,
    )


async def test_a_pair_of_counters_comes_back_in_the_order_asked(
    uow: SqlUnitOfWorkFactory,
) -> None:
    ip, account = _counter("ip:192.0.2.1", 1), _counter("account:abc", 5)
    async with uow() as writer:
        await writer.login_throttles.put(ip)
        await writer.login_throttles.put(account)
        await writer.commit()

    async with uow(write=False) as reader:
        assert await reader.login_throttles.get_pair(ip.key, account.key) == (ip, account)
        assert await reader.login_throttles.get_pair(account.key, ip.key) == (account, ip)
        assert await reader.login_throttles.get_pair(ip.key, "account:none") == (ip, None)
        assert await reader.login_throttles.get_pair("ip:none", account.key) == (None, account)
        assert await reader.login_throttles.get_pair("ip:none", "account:none") == (None, None)


async def test_a_refresh_token_comes_back_with_its_owner(uow: SqlUnitOfWorkFactory) -> None:
    owner = User(
        id="user-1",
        username="alice",
        password_hash="hash",
        roles=("customer", "support"),
        created_at=NOW,
        locked=True,
    )
    other = User(id="user-2", username="bob", password_hash="h", roles=(), created_at=NOW)
    _, token = RefreshToken.issue(user_id=owner.id, scope=("accounts:read",), now=NOW, ttl_s=60)
    _, others = RefreshToken.issue(user_id=other.id, scope=(), now=NOW, ttl_s=60)
    async with uow() as writer:
        await writer.users.add(owner)
        await writer.users.add(other)
        await writer.refresh_tokens.add(token)
        await writer.refresh_tokens.add(others)
        await writer.commit()

    async with uow() as writer:
        assert await writer.refresh_tokens.get_with_owner(token.token_hash) == (token, owner)
        assert await writer.refresh_tokens.get_with_owner(others.token_hash) == (others, other)
        assert await writer.refresh_tokens.get_with_owner("0" * 64) is None
