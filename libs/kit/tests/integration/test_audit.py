"""The hash-chained audit log against real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import MetaData, text

from flotilla_kit.audit import GENESIS, AuditLog, append_only_ddl, audit_table
from flotilla_kit.db import Database, DatabaseError, Query, UnitOfWork
from flotilla_kit.testing import create_tables

metadata = MetaData()
table = audit_table(metadata)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    await create_tables(database_url, metadata)
    db = Database(database_url)
    async with db.transaction() as tx:
        for statement in append_only_ddl(tx.dialect.name):
            await tx.execute(Query(text(statement)))
        await tx.commit()
    yield db
    await db.dispose()


async def _append(database: Database, log: AuditLog, n: int) -> None:
    for i in range(n):
        async with UnitOfWork(database) as uow:
            await log.append(
                uow.transaction, actor=f"user-{i}", action="login", target="auth",
                details={"ip": "127.0.0.1", "n": i},
            )  # fmt: skip
            await uow.commit()


async def test_an_untouched_chain_verifies(database: Database) -> None:
    log = AuditLog(table)
    await _append(database, log, 5)
    async with UnitOfWork(database, write=False) as uow:
        report = await log.verify(uow.transaction)
        tail = await log.tail(uow.transaction, 2)
    assert report.intact
    assert report.records == 5
    assert [r.seq for r in tail] == [4, 5]
    assert tail[1].prev_hash == tail[0].hash
    assert tail[1].details == {"ip": "127.0.0.1", "n": 4}


async def test_the_report_and_the_newest_records_as_commands_print_them(
    database: Database, database_url: str
) -> None:
    log = AuditLog(table)
    empty = await log.report(database_url, "svc")
    assert (empty["records"], empty["intact"], empty["head"]) == (0, True, GENESIS)
    await _append(database, log, 3)
    report = await log.report(database_url, "svc")
    newest = await log.newest(database_url, 2)
    assert [r["seq"] for r in newest] == [2, 3]
    assert report == {
        "service": "svc", "records": 3, "intact": True, "first_broken_seq": None,
        "reason": "", "head": newest[-1]["hash"],
    }  # fmt: skip


async def test_the_database_refuses_updates_and_deletes(database: Database) -> None:
    log = AuditLog(table)
    await _append(database, log, 2)
    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"):
        with pytest.raises(DatabaseError, match="append-only"):
            async with database.transaction() as tx:
                await tx.execute(Query(text(statement)))


async def test_an_append_rolled_back_with_its_transaction_leaves_no_trace(
    database: Database,
) -> None:
    log = AuditLog(table)
    async with UnitOfWork(database) as uow:
        await log.append(uow.transaction, actor="a", action="transfer")
        # no commit: the change it describes failed, so the record goes too
    await _append(database, log, 1)
    async with UnitOfWork(database, write=False) as uow:
        report = await log.verify(uow.transaction)
    assert (report.intact, report.records) == (True, 1)


async def _tamper(database: Database, statement: str) -> None:
    """What someone with the database owner's rights could do: lift the guard, edit."""
    async with database.transaction() as tx:
        if tx.dialect.name == "sqlite":
            await tx.execute(Query(text("DROP TRIGGER audit_events_no_update")))
            await tx.execute(Query(text("DROP TRIGGER audit_events_no_delete")))
        else:
            await tx.execute(Query(text("ALTER TABLE audit_events DISABLE TRIGGER USER")))
        await tx.execute(Query(text(statement)))
        await tx.commit()


@pytest.mark.parametrize(
    ("statement", "broken", "reason"),
    [
        ("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3", 3, "content"),
        ("UPDATE audit_events SET details = '{}' WHERE seq = 4", 4, "content"),
        ("DELETE FROM audit_events WHERE seq = 2", 2, "missing"),
        ("UPDATE audit_events SET at = at WHERE seq = 1", None, ""),
    ],
    ids=["changed actor", "changed details", "removed record", "no change"],
)
async def test_tampering_is_found_at_the_first_broken_record(
    database: Database, statement: str, broken: int | None, reason: str
) -> None:
    log = AuditLog(table)
    await _append(database, log, 5)
    await _tamper(database, statement)
    async with UnitOfWork(database, write=False) as uow:
        report = await log.verify(uow.transaction)
    assert report.first_broken_seq == broken
    assert reason in report.reason


async def test_a_rehashed_forgery_still_breaks_the_next_link(database: Database) -> None:
    log = AuditLog(table)
    await _append(database, log, 3)
    await _tamper(database, "UPDATE audit_events SET actor = 'x', hash = 'forged' WHERE seq = 2")
    async with UnitOfWork(database, write=False) as uow:
        report = await log.verify(uow.transaction)
    assert report.first_broken_seq == 2  # its own hash no longer matches its content


async def test_concurrent_appends_keep_one_chain(database: Database) -> None:
    log = AuditLog(table)
    await asyncio.gather(*(_append(database, log, 5) for _ in range(4)))
    async with UnitOfWork(database, write=False) as uow:
        report = await log.verify(uow.transaction)
    assert (report.intact, report.records) == (True, 20)


async def test_timestamps_are_kept_to_the_microsecond(database: Database) -> None:
    log = AuditLog(table)
    moment = dt.datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=dt.UTC)
    async with UnitOfWork(database) as uow:
        await log.append(uow.transaction, actor="a", action="b", at=moment)
        await uow.commit()
    async with UnitOfWork(database, write=False) as uow:
        [record] = await log.tail(uow.transaction)
        assert record.at == moment
        assert (await log.verify(uow.transaction)).intact
