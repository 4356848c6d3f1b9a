"""The command line (seed, --help) and the migrations, against real databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import make_url
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from flotilla_auth.adapters.tables import metadata
from flotilla_auth.bootstrap import create_app, migrate
from flotilla_auth.entrypoints.cli import app as cli_app
from flotilla_auth.entrypoints.cli import read_seed_file, seed_users
from flotilla_auth.settings import AuthSettings
from flotilla_kit.db import is_sqlite

from .helpers import cheap_hasher, password_grant, table_rows


def seed_file(tmp_path: Path, password: str, roles: list[str], name: str = "seed.json") -> Path:
    path = tmp_path / name
    users = [
        {"username": "Alice", "password": password, "roles": roles},
        {"username": "root", "password": "walrus-parliament-7", "roles": ["admin"]},
    ]
    path.write_text(json.dumps({"users": users}))
    return path


def alice(printed: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(u for u in printed["users"] if u["username"] == "alice")
    return found


async def seed(settings: AuthSettings, path: Path) -> dict[str, Any]:
    # What the `seed` command runs after its own logging set-up and migration.
    await asyncio.to_thread(migrate, settings)
    return await seed_users(settings, read_seed_file(path))


async def test_seed_is_idempotent_and_updates_passwords_and_roles(
    settings: AuthSettings, database_url: str, tmp_path: Path
) -> None:
    first = await seed(settings, seed_file(tmp_path, "first-password", ["customer"]))
    rows_after_first = await table_rows(database_url)
    again = await seed(settings, seed_file(tmp_path, "first-password", ["customer"]))

    assert again == first
    assert await table_rows(database_url) == rows_after_first

    changed = await seed(settings, seed_file(tmp_path, "second-password", ["support", "customer"]))

    rows = await table_rows(database_url)
    assert [u["username"] for u in rows["users"] if u["username"] == "alice"] == ["alice"]
    assert len(rows["users"]) == 2
    assert len(rows["signing_keys"]) == 1
    alice_first, alice_now = (alice(result) for result in (first, changed))
    assert alice_now == {
        "username": "alice",
        "id": alice_first["id"],
        "roles": ["customer", "support"],
    }

    app: FastAPI = create_app(settings, password_hasher=cheap_hasher())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client,
    ):
        assert (await password_grant(client, "alice", "first-password")).status_code == 400
        assert (await password_grant(client, "alice", "second-password")).status_code == 200


async def test_seed_refuses_unknown_roles_before_writing(
    settings: AuthSettings, database_url: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(migrate, settings)
    before = await table_rows(database_url)

    with pytest.raises(Exception, match="unknown roles"):
        read_seed_file(seed_file(tmp_path, "first-password", ["customer", "wizard"]))

    assert await table_rows(database_url) == before


def test_seed_command_prints_only_json_on_stdout(
    settings: AuthSettings, database_url: str, tmp_path: Path
) -> None:
    path = seed_file(tmp_path, "first-password", ["customer"])
    env = {
        **os.environ,
        "FLOTILLA_DATABASE_URL": database_url,
        "FLOTILLA_VAR_DIR": str(tmp_path),
        "FLOTILLA_PROFILE": "test",
        "FLOTILLA_KEY_ENCRYPTION_KEY": settings.key_encryption_key.get_secret_value(),
    }

    done = subprocess.run(
        [sys.executable, "-m", "flotilla_auth", "seed", "--file", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert [u["username"] for u in printed["users"]] == ["alice", "root"]
    assert all(set(u) == {"username", "id", "roles"} for u in printed["users"])
    assert "signing key created" in done.stderr  # logs went to stderr
    ids = {row["id"] for row in asyncio.run(table_rows(database_url))["users"]}
    assert {u["id"] for u in printed["users"]} == ids


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli_app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "migrate", "seed", "rotate-keys", "audit-verify", "audit-tail"):
        assert command in result.output


async def test_migrations_build_exactly_the_tables_the_code_uses(
    settings: AuthSettings, database_url: str
) -> None:
    await asyncio.to_thread(migrate, settings)
    await asyncio.to_thread(migrate, settings)  # a second run finds nothing to do

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    # Alembic compares through a SQLAlchemy connection of its own, not the kit's transactions.
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(differences)
    finally:
        await engine.dispose()
    assert diff == []


def test_migrated_sqlite_file_is_already_in_wal_mode(
    settings: AuthSettings, database_url: str
) -> None:
    # Otherwise instances starting together race to switch it and fail with "locked".
    migrate(settings)
    if is_sqlite(database_url):
        with contextlib.closing(sqlite3.connect(make_url(database_url).database or "")) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    else:
        assert asyncio.run(table_rows(database_url))["users"] == []
