"""Idempotency-Keys that name a resource (`SqlResourceKeys`), on real SQLite and PostgreSQL:
the row a key leaves is the one the services have always stored (status 202, body
`{"<field>": "<id>"}` byte for byte), such a row stored earlier reads back, and a key stored
twice is `DuplicateIdempotencyKey` with the first one kept."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import MetaData, bindparam, select

from flotilla_kit.db import Database, Query, UnitOfWork
from flotilla_kit.idempotency import SqlResourceKeys, idempotency_table
from flotilla_kit.resource_keys import DuplicateIdempotencyKey, KeyedResource
from flotilla_kit.testing import database_with_tables

AT = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)

metadata = MetaData()
keys = idempotency_table(metadata)
_ROW = Query(
    select(keys.c.status, keys.c.body, keys.c.fingerprint, keys.c.created_at).where(
        keys.c.scope == bindparam("scope"), keys.c.key == bindparam("key")
    )
)
_INSERT = Query(keys.insert().values({c.name: bindparam(c.name) for c in keys.c}))


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    async with database_with_tables(database_url, metadata) as found:
        yield found


async def test_a_remembered_key_is_the_row_services_store_and_reads_back(
    database: Database,
) -> None:
    order = uuid.uuid4()
    async with UnitOfWork(database) as uow:
        found = SqlResourceKeys(uow.transaction, keys, field="order_id")
        await found.remember("alice:orders", "k-1", fingerprint="f1", resource_id=order, at=AT)
        await uow.commit()
    async with UnitOfWork(database, write=False) as uow:
        row = await uow.transaction.first(_ROW, scope="alice:orders", key="k-1")
        assert row is not None
        assert (row.status, row.body) == (202, f'{{"order_id": "{order}"}}')
        assert (row.fingerprint, row.created_at) == ("f1", AT)
        found = SqlResourceKeys(uow.transaction, keys, field="order_id")
        assert await found.find("alice:orders", "k-1") == KeyedResource("f1", order)
        assert await found.find("bob:orders", "k-1") is None  # keys are per scope


async def test_a_row_stored_before_the_kit_had_it_reads_back(database: Database) -> None:
    # As payments' own adapter wrote it, before the kit held the code.
    transfer = uuid.uuid4()
    async with UnitOfWork(database) as uow:
        await uow.transaction.execute(
            _INSERT, scope="alice:transfer", key="k", fingerprint="f", status=202,
            body=f'{{"transfer_id": "{transfer}"}}', created_at=AT,
        )  # fmt: skip
        await uow.commit()
    async with UnitOfWork(database, write=False) as uow:
        found = SqlResourceKeys(uow.transaction, keys, field="transfer_id")
        assert await found.find("alice:transfer", "k") == KeyedResource("f", transfer)


async def test_a_key_stored_twice_is_a_duplicate_and_the_first_one_stays(
    database: Database,
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    async with UnitOfWork(database) as uow:
        await SqlResourceKeys(uow.transaction, keys, field="transfer_id").remember(
            "alice:transfer", "k", fingerprint="f1", resource_id=first, at=AT
        )
        await uow.commit()
    with pytest.raises(DuplicateIdempotencyKey, match=r"^k$"):
        async with UnitOfWork(database) as uow:
            await SqlResourceKeys(uow.transaction, keys, field="transfer_id").remember(
                "alice:transfer", "k", fingerprint="f2", resource_id=second, at=AT
            )
    async with UnitOfWork(database, write=False) as uow:
        found = SqlResourceKeys(uow.transaction, keys, field="transfer_id")
        assert await found.find("alice:transfer", "k") == KeyedResource("f1", first)
