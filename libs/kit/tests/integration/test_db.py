"""The database chassis against real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    func,
    select,
    text,
)

from flotilla_kit.db import (
    CheckViolation,
    Database,
    DatabaseUnavailable,
    ForeignKeyViolation,
    Query,
    UniqueViolation,
    UnitOfWork,
    UtcDateTime,
)
from flotilla_kit.migrations import upgrade_to_head
from flotilla_kit.testing import create_tables

metadata = MetaData()
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
)
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", Integer, ForeignKey("events.id"), nullable=False),
    Column("amount", Integer, CheckConstraint("amount >= 0", name="amount_not_negative")),
)

INSERT_EVENT = Query(
    events.insert().values(id=bindparam("id"), name=bindparam("name"), at=bindparam("at"))
)
EVENT_BY_ID = Query(select(events).where(events.c.id == bindparam("id")))
COUNT_EVENTS = Query(select(func.count().label("n")).select_from(events))
NAMED_X = Query(select(events.c.id).where(events.c.name == "x"))  # a literal is a parameter too
RENAME = Query(
    events.update().where(events.c.id == bindparam("key")).values(name=bindparam("name"))
)
INSERT_NOTE = Query(
    notes.insert().values(
        id=bindparam("id"), event_id=bindparam("event_id"), amount=bindparam("amount")
    )
)
DELETE_EVENTS = Query(text("DELETE FROM events"))


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    """A throwaway Alembic script directory whose env.py uses the kit's runner."""
    scripts = tmp_path / "migrations"
    (scripts / "versions").mkdir(parents=True)
    (scripts / "env.py").write_text(
        textwrap.dedent(
            """
            from sqlalchemy import MetaData
            from flotilla_kit.migrations import run_env
            run_env(MetaData())
            """
        )
    )
    (scripts / "versions" / "0001_events.py").write_text(
        textwrap.dedent(
            """
            import sqlalchemy as sa
            from alembic import op
            revision = "0001"
            down_revision = None
            branch_labels = None
            depends_on = None
            def upgrade():
                op.create_table(
                    "events",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(20), nullable=False),
                    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
                )
                op.create_table(
                    "notes",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id"), nullable=False),
                    sa.Column("amount", sa.Integer, sa.CheckConstraint("amount >= 0")),
                )
            def downgrade():
                op.drop_table("notes")
                op.drop_table("events")
            """
        )
    )
    return scripts


async def test_concurrent_upgrades_are_serialised(database_url: str, migrations: Path) -> None:
    # Several instances (processes) start at once and each upgrades: one creates the table,
    # the others wait for it and find nothing to do.
    script = "import sys; from pathlib import Path; from flotilla_kit.migrations import upgrade_to_head; upgrade_to_head(sys.argv[1], Path(sys.argv[2]))"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, database_url, str(migrations),
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]  # fmt: skip
    for process in processes:
        _, err = await process.communicate()
        assert process.returncode == 0, err.decode()
    database = Database(database_url)
    try:
        async with database.transaction(write=False) as tx:
            version = await tx.all(Query(text("SELECT version_num FROM alembic_version")))
            assert await tx.scalar(COUNT_EVENTS) == 0  # the table is there
        assert [tuple(v) for v in version] == [("0001",)]
    finally:
        await database.dispose()


async def test_timestamps_come_back_aware_utc(database_url: str, migrations: Path) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url, migrations)
    database = Database(database_url)
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    try:
        async with UnitOfWork(database) as uow:
            await uow.transaction.execute(INSERT_EVENT, id=1, name="x", at=moment)
            await uow.commit()
        async with UnitOfWork(database, write=False) as uow:
            row = await uow.transaction.first(EVENT_BY_ID, id=1)
        assert row is not None
        assert (row.id, row.name, row.at) == (1, "x", moment)  # by name
        assert row[2].tzinfo == dt.UTC  # and by position
        with pytest.raises(ValueError, match="naive"):
            async with UnitOfWork(database) as uow:
                await uow.transaction.execute(
                    INSERT_EVENT, id=2, name="y", at=dt.datetime(2026, 1, 1)
                )
    finally:
        await database.dispose()


async def test_parameters_by_name_literals_and_missing_ones(
    database_url: str, migrations: Path
) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url, migrations)
    database = Database(database_url)
    now = dt.datetime.now(dt.UTC)
    try:
        async with database.transaction() as tx:
            await tx.execute_many(
                INSERT_EVENT,
                [{"id": n, "name": "x" if n % 2 else "y", "at": now} for n in range(6)],
            )
            assert [r.id for r in await tx.all(NAMED_X)] == [1, 3, 5]
            assert await tx.execute(RENAME, key=1, name="z") == 1
            assert await tx.execute(RENAME, key=99, name="z") == 0  # the rows it changed
            with pytest.raises(TypeError, match="missing query parameter 'name'"):
                await tx.execute(RENAME, key=1)
            await tx.commit()
        async with database.transaction(write=False) as tx:
            assert await tx.scalar(COUNT_EVENTS) == 6
            assert await tx.first(EVENT_BY_ID, id=42) is None
            assert await tx.scalar(Query(select(events.c.name).where(events.c.id == 42))) is None
    finally:
        await database.dispose()


async def test_constraint_violations_are_the_kits_errors_and_a_savepoint_keeps_the_rest(
    database_url: str, migrations: Path
) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url, migrations)
    database = Database(database_url)
    now = dt.datetime.now(dt.UTC)
    try:
        async with database.transaction() as tx:
            await tx.execute(INSERT_EVENT, id=1, name="kept", at=now)
            cases: list[tuple[type[Exception], Query, dict[str, object]]] = [
                (UniqueViolation, INSERT_EVENT, {"id": 1, "name": "again", "at": now}),
                (CheckViolation, INSERT_NOTE, {"id": 1, "event_id": 1, "amount": -1}),
                (ForeignKeyViolation, INSERT_NOTE, {"id": 2, "event_id": 9, "amount": 1}),
            ]
            for error, statement, params in cases:
                with pytest.raises(error):
                    async with tx.savepoint():
                        await tx.execute(RENAME, key=1, name="undone")
                        await tx.execute(statement, **params)
            # PostgreSQL goes on after the failed statements: each was in a savepoint.
            await tx.execute(INSERT_NOTE, id=3, event_id=1, amount=5)
            await tx.commit()
        async with database.transaction(write=False) as tx:
            row = await tx.first(EVENT_BY_ID, id=1)
            assert row is not None
            assert row.name == "kept"  # the rename inside each savepoint was undone
            assert await tx.scalar(Query(select(func.count().label("n")).select_from(notes))) == 1
    finally:
        await database.dispose()


async def test_unit_of_work_rolls_back_unless_committed(
    database_url: str, migrations: Path
) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url, migrations)
    database = Database(database_url)
    now = dt.datetime.now(dt.UTC)
    try:
        async with UnitOfWork(database) as uow:
            await uow.transaction.execute(INSERT_EVENT, id=1, name="dropped", at=now)
        with pytest.raises(RuntimeError):
            async with UnitOfWork(database) as uow:
                await uow.transaction.execute(INSERT_EVENT, id=2, name="failed", at=now)
                raise RuntimeError("use case failed half way")
        async with UnitOfWork(database, write=False) as uow:
            count = await uow.transaction.scalar(COUNT_EVENTS)
        assert count == 0
    finally:
        await database.dispose()


async def test_json_comes_back_decoded_on_both_backends(database_url: str) -> None:
    documents = Table(
        "documents", MetaData(), Column("id", Integer, primary_key=True), Column("doc", JSON)
    )
    await create_tables(database_url, documents.metadata)
    database = Database(database_url)
    value = {"roles": ["customer", "é"], "n": 1, "nested": {"ok": True}}
    try:
        async with database.transaction() as tx:
            await tx.execute(
                Query(documents.insert().values(id=bindparam("id"), doc=bindparam("doc"))),
                id=1, doc=value,
            )  # fmt: skip
            await tx.commit()
        async with database.transaction(write=False) as tx:
            stored = await tx.scalar(Query(select(documents.c.doc)))
        assert stored == value
    finally:
        await database.dispose()


async def test_a_column_name_twice_needs_a_label() -> None:
    joined = select(events.c.id, notes.c.id).join(notes, notes.c.event_id == events.c.id)
    with pytest.raises(ValueError, match="distinct name"):
        Query(joined).on(Database("sqlite:///unused.db").dialect)


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    try:
        async with database.transaction(write=False) as tx:
            journal = await tx.scalar(Query(text("PRAGMA journal_mode").columns(mode=String)))
            keys = await tx.scalar(Query(text("PRAGMA foreign_keys").columns(on=Integer)))
        assert (journal, keys) == ("wal", 1)
        await database.ping()
    finally:
        await database.dispose()


async def test_one_process_writers_take_turns_and_a_failure_lets_the_next_in(
    sqlite_url: str, migrations: Path
) -> None:
    """SQLite: the writers of one process queue in order, so none waits on the file lock
    while another of ours writes, and one that fails half way lets the next one in."""
    await asyncio.to_thread(upgrade_to_head, sqlite_url, migrations)
    database = Database(sqlite_url)
    inside, most_inside, order = 0, 0, []

    async def write(n: int) -> None:
        nonlocal inside, most_inside
        async with UnitOfWork(database) as uow:
            inside += 1
            most_inside = max(most_inside, inside)
            order.append(n)
            await uow.transaction.execute(
                INSERT_EVENT, id=n, name=f"w{n}", at=dt.datetime.now(dt.UTC)
            )
            await asyncio.sleep(0)  # let every other writer try to get in meanwhile
            inside -= 1
            if n == 3:
                raise RuntimeError("this one fails half way")
            await uow.commit()

    try:
        results = await asyncio.gather(*(write(n) for n in range(12)), return_exceptions=True)
        assert [type(r) for r in results].count(RuntimeError) == 1
        assert most_inside == 1
        assert order == list(range(12))  # first come, first served
        async with UnitOfWork(database, write=False) as uow:
            assert await uow.transaction.scalar(COUNT_EVENTS) == 11
        async with database.transaction() as tx:  # the queue is free again
            await tx.execute(DELETE_EVENTS)
            await tx.commit()
    finally:
        await database.dispose()


async def test_waiting_for_another_process_s_write_lock_does_not_stop_the_loop(
    sqlite_url: str, migrations: Path
) -> None:
    """Another process (here: another connection) holds SQLite's write lock: our writer
    waits for it without blocking the event loop, and gets in once it is released."""
    await asyncio.to_thread(upgrade_to_head, sqlite_url, migrations)
    path = sqlite_url.split(":///", 1)[1]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    database = Database(sqlite_url)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    async def write() -> None:
        async with database.transaction() as tx:
            await tx.execute(INSERT_EVENT, id=1, name="after", at=dt.datetime.now(dt.UTC))
            await tx.commit()

    ticking = asyncio.create_task(ticker())
    try:
        writing = asyncio.create_task(write())
        await asyncio.sleep(0.1)
        assert not writing.done()  # still waiting for the lock...
        assert ticks > 20  # ...while the loop went on serving
        other.execute("COMMIT")
        await asyncio.wait_for(writing, 5)
        async with database.transaction(write=False) as tx:
            assert await tx.scalar(COUNT_EVENTS) == 1
    finally:
        ticking.cancel()
        other.close()
        await database.dispose()


@pytest.mark.postgres
async def test_postgres_connections_are_shared_by_at_most_pool_size_transactions(
    postgres_url: str, migrations: Path
) -> None:
    """Five transactions on a pool of two: two hold connections, the others wait their turn
    and get one as soon as a transaction ends; a connection broken mid-way is replaced."""
    await asyncio.to_thread(upgrade_to_head, postgres_url, migrations)
    database = Database(postgres_url, pool_size=2)
    inside, most_inside = 0, 0
    release, two_inside = asyncio.Event(), asyncio.Event()

    async def write(n: int) -> None:
        nonlocal inside, most_inside
        async with database.transaction() as tx:
            inside += 1
            most_inside = max(most_inside, inside)
            if inside == 2:
                two_inside.set()
            await tx.execute(INSERT_EVENT, id=n, name=f"w{n}", at=dt.datetime.now(dt.UTC))
            await release.wait()
            inside -= 1
            await tx.commit()

    try:
        writers = [asyncio.create_task(write(n)) for n in range(5)]
        await asyncio.wait_for(two_inside.wait(), 10)
        await asyncio.sleep(0.1)  # time enough for a third to get in, if the pool let it
        assert inside == 2
        release.set()
        await asyncio.wait_for(asyncio.gather(*writers), 10)
        assert most_inside == 2
        count = Query(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            ).columns(n=Integer)
        )
        async with database.transaction(write=False) as tx:
            assert await tx.scalar(count) <= 2
            assert await tx.scalar(COUNT_EVENTS) == 5
        # A connection that breaks is not handed out again: the next transaction gets a new one.
        with pytest.raises(DatabaseUnavailable):
            async with database.transaction() as tx:
                await tx.execute(Query(text("SELECT pg_terminate_backend(pg_backend_pid())")))
        async with database.transaction(write=False) as tx:
            assert await tx.scalar(COUNT_EVENTS) == 5
    finally:
        await database.dispose()
