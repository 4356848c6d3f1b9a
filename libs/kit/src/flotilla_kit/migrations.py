"""Alembic migrations, run programmatically at start and by each service's `migrate` command.

N instances start at once and each upgrades to head, so the upgrade holds a lock: a file
lock beside a SQLite database, a transaction-scoped advisory lock on PostgreSQL. The second
instance waits, then finds nothing to do.
"""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, create_engine, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from flotilla_kit.db import is_sqlite

__all__ = ["run_env", "upgrade_to_head"]

# Any constant will do; all Flotilla services share it, each in its own database.
_PG_MIGRATION_LOCK = 0x466C6F74
# Alembic's `context` is a process-wide global: one upgrade at a time per process.
_IN_PROCESS = threading.Lock()


def _config(url: str, script_location: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextmanager
def _sqlite_file_lock(url: str) -> Iterator[None]:
    database = make_url(url).database
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_suffix(".migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _switch_to_wal(database: str) -> None:
    """WAL mode is stored in the file, and switching needs the file to itself: done once
    here, under the lock, so that later connections asking for it find it already set."""
    connection = sqlite3.connect(database, timeout=30)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def upgrade_to_head(url: str, script_location: Path) -> None:
    """Blocking: upgrade the database at `url`. Call it in a thread from async code."""
    with _IN_PROCESS:
        if not is_sqlite(url):
            command.upgrade(_config(url, script_location), "head")
            return
        database = make_url(url).database
        with _sqlite_file_lock(url):
            if database and database != ":memory:":
                _switch_to_wal(database)
            command.upgrade(_config(url, script_location), "head")


def _run_sync(connection: Connection, target_metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
        context.run_migrations()


async def _run_async(url: str, target_metadata: MetaData) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync, target_metadata)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_sqlite(url: str, target_metadata: MetaData) -> None:
    # The standard library's driver: the services read and write SQLite through it too.
    engine = create_engine(make_url(url).set(drivername="sqlite"))
    try:
        with engine.connect() as connection:
            _run_sync(connection, target_metadata)
            connection.commit()
    finally:
        engine.dispose()


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's `migrations/env.py` (online mode only)."""
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set")
    if is_sqlite(url):
        _run_sqlite(url, target_metadata)
    else:
        asyncio.run(_run_async(url, target_metadata))
