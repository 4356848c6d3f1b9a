"""The SQL Idempotency-Keys on both databases: a key stored twice is the kit's
`DuplicateIdempotencyKey` (the coordinator retries and replays on it), whatever the
database raised."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest

from flotilla_kit.db import Database
from flotilla_kit.migrations import upgrade_to_head
from flotilla_kit.resource_keys import DuplicateIdempotencyKey, KeyedResource
from flotilla_payments.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_payments.bootstrap import MIGRATIONS


@pytest.fixture
async def uow(database_url: str) -> AsyncIterator[SqlUnitOfWorkFactory]:
    await asyncio.to_thread(upgrade_to_head, database_url, MIGRATIONS)
    database = Database(database_url)
    try:
        yield SqlUnitOfWorkFactory(database)
    finally:
        await database.dispose()


async def test_a_key_stored_twice_is_a_duplicate_and_the_first_one_stays(
    uow: SqlUnitOfWorkFactory,
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    at = dt.datetime.now(dt.UTC)
    async with uow() as u:
        await u.idempotency.remember(
            "alice:transfer", "k", fingerprint="f1", resource_id=first, at=at
        )
        await u.commit()
    with pytest.raises(DuplicateIdempotencyKey):
        async with uow() as u:
            await u.idempotency.remember(
                "alice:transfer", "k", fingerprint="f2", resource_id=second, at=at
            )
    async with uow(write=False) as u:
        assert await u.idempotency.find("alice:transfer", "k") == KeyedResource("f1", first)
        assert await u.idempotency.find("bob:transfer", "k") is None  # keys are per caller
