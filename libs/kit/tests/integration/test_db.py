"""The database chassis against real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select, text

from flotilla_kit.db import Database, UnitOfWork, UtcDateTime
from flotilla_kit.migrations import upgrade_to_head

metadata = MetaData()
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
)


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
            def downgrade():
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
        async with database.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert "events" in tables
        assert version == [("0001",)]
    finally:
        await database.dispose()


async def test_timestamps_come_back_aware_utc(database_url: str, migrations: Path) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url, migrations)
    database = Database(database_url)
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    try:
        async with UnitOfWork(database) as uow:
            await uow.session.execute(events.insert().values(id=1, name="x", at=moment))
            await uow.commit()
        async with UnitOfWork(database, write=False) as uow:
            stored = (await uow.session.execute(select(events.c.at))).scalar_one()
        assert stored == moment
        assert stored.tzinfo == dt.UTC
        with pytest.raises(Exception, match="naive"):
            async with UnitOfWork(database) as uow:
                await uow.session.execute(
                    events.insert().values(id=2, name="y", at=dt.datetime(2026, 1, 1))
                )
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
            await uow.session.execute(events.insert().values(id=1, name="dropped", at=now))
        with pytest.raises(RuntimeError):
            async with UnitOfWork(database) as uow:
                await uow.session.execute(events.insert().values(id=2, name="failed", at=now))
                raise RuntimeError("use case failed half way")
        async with UnitOfWork(database, write=False) as uow:
            count = (await uow.session.execute(text("SELECT COUNT(*) FROM events"))).scalar_one()
        assert count == 0
    finally:
        await database.dispose()


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    try:
        async with database.engine.connect() as conn:
            journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
        assert (journal, foreign_keys) == ("wal", 1)
        await database.ping()
    finally:
        await database.dispose()


async def test_one_process_writers_take_turns_and_a_failure_lets_the_next_in(
    sqlite_url: str, migrations: Path
) -> None:
    """SQLite: the writers of one process queue in order, so none sits in SQLite's busy
    handler (which sleeps up to 100 ms between tries) while another of ours writes."""
    await asyncio.to_thread(upgrade_to_head, sqlite_url, migrations)
    database = Database(sqlite_url)
    inside, most_inside, order = 0, 0, []

    async def write(n: int) -> None:
        nonlocal inside, most_inside
        async with UnitOfWork(database) as uow:
            inside += 1
            most_inside = max(most_inside, inside)
            order.append(n)
            await uow.session.execute(
                events.insert().values(id=n, name=f"w{n}", at=dt.datetime.now(dt.UTC))
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
            count = (await uow.session.execute(text("SELECT COUNT(*) FROM events"))).scalar_one()
        assert count == 11
        async with database.write_sessions() as session:  # the queue is free again
            await session.execute(text("DELETE FROM events"))
            await session.commit()
    finally:
        await database.dispose()
