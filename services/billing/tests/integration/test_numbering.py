"""Document numbers under concurrency, on SQLite and PostgreSQL: writers on connections
of their own (their own `Database`, so SQLite's file lock and PostgreSQL's row lock are
what orders them, not the kit's in-process queue) take numbers at once, some roll back;
the committed documents are numbered 1..N with no gap and no duplicate. And the schema
the migrations build is the one the code declares, with its constraints."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Uuid, bindparam, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from flotilla_billing.adapters.document_repository import SqlDocuments
from flotilla_billing.adapters.tables import documents, metadata
from flotilla_billing.domain import ConfirmedOrder, OrderLine, VatRates, format_number, invoice_for
from flotilla_kit.db import CheckViolation, Database, Query, UniqueViolation

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
WRITERS = 6
EACH = 5
_NUMBERS = Query(select(documents.c.year, documents.c.seq, documents.c.number))


def _invoice(number: str, order_id: str) -> object:
    order = ConfirmedOrder(order_id, "alice", "EUR", 300, (OrderLine("apple", 2, 150),), "t")
    return invoice_for(
        order, rates=VatRates(default_bp=2000), id=uuid.uuid4(), number=number, issued_at=NOW
    )


async def _writer(url: str, who: int, started: asyncio.Event) -> int:
    """EACH documents, one transaction each; every third one rolls back after taking its
    number. Returns how many it committed."""
    database = Database(url)
    committed = 0
    try:
        await started.wait()
        for n in range(EACH):
            async with database.transaction() as tx:
                repository = SqlDocuments(tx)
                seq = await repository.next_number(NOW.year)
                await asyncio.sleep(0)  # let the others run into the held counter
                await repository.add(_invoice(format_number(NOW.year, seq), f"o-{who}-{n}"))  # type: ignore[arg-type]
                if (who + n) % 3 == 0:
                    continue  # rolled back: its number must come back
                await tx.commit()
                committed += 1
    finally:
        await database.dispose()
    return committed


async def test_concurrent_writers_get_gapless_unique_numbers(migrated: str) -> None:
    started = asyncio.Event()
    tasks = [asyncio.create_task(_writer(migrated, who, started)) for who in range(WRITERS)]
    started.set()
    committed = sum(await asyncio.gather(*tasks))
    database = Database(migrated)
    try:
        async with database.transaction(write=False) as tx:
            rows = await tx.all(_NUMBERS)
    finally:
        await database.dispose()
    assert 0 < committed < WRITERS * EACH  # some rolled back
    assert sorted(row.seq for row in rows) == list(range(1, committed + 1))
    assert all(row.number == format_number(row.year, row.seq) for row in rows)


async def test_each_year_has_its_own_sequence(database: Database) -> None:
    async with database.transaction() as tx:
        repository = SqlDocuments(tx)
        assert [await repository.next_number(2026) for _ in range(3)] == [1, 2, 3]
        assert await repository.next_number(2027) == 1
        await tx.commit()
    async with database.transaction() as tx:
        assert await SqlDocuments(tx).next_number(2026) == 4


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_the_migrations_build_what_the_code_declares(migrated: str) -> None:
    engine = create_async_engine(migrated)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await engine.dispose()


_DOCUMENT = (
    "INSERT INTO documents (id, kind, year, seq, number, order_id, customer_id, currency,"
    " net_minor, vat_minor, total_minor, credits_id, credits_number, issued_at) VALUES"
    " (:id, :kind, 2026, :seq, :number, :order_id, 'alice', 'EUR', :net, :vat, :total,"
    " NULL, NULL, :now)"
)
_GOOD = {"kind": "invoice", "seq": 1, "number": "2026-000001", "order_id": "o-1", "net": 250,
         "vat": 50, "total": 300}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"kind": "receipt"}, CheckViolation),
        ({"vat": 51}, CheckViolation),  # net + VAT is not the total
        ({"kind": "credit_note", "net": -250, "vat": -50, "total": -300}, CheckViolation),
        ({"seq": 0}, CheckViolation),
        ({"number": "dup"}, UniqueViolation),  # (year, seq) taken
        ({"seq": 2, "number": "2026-000002"}, UniqueViolation),  # a second invoice for o-1
    ],
)
async def test_the_database_refuses_what_no_document_may_be(
    database: Database, change: dict[str, object], error: type[Exception]
) -> None:
    insert = Query(text(_DOCUMENT).bindparams(bindparam("id", type_=Uuid())))
    async with database.transaction() as tx:
        await tx.execute(insert, id=uuid.uuid4(), now=NOW, **_GOOD)
        await tx.commit()
    with pytest.raises(error):
        async with database.transaction() as tx:
            await tx.execute(insert, id=uuid.uuid4(), now=NOW, **{**_GOOD, **change})
