"""Helpers for the integration tests: a movable clock, a cheap hasher, raw table reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import argon2
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from typer.testing import CliRunner, Result

from flotilla_auth.adapters.passwords import Argon2PasswordHasher
from flotilla_auth.adapters.tables import metadata
from flotilla_auth.domain.users import User
from flotilla_auth.entrypoints import cli
from flotilla_auth.service_layer.components import Components
from flotilla_auth.service_layer.users import UserSpec, ensure_users
from flotilla_auth.settings import AuthSettings
from flotilla_kit import service_cli
from flotilla_kit.db import Database, Query

PASSWORD = "correct horse battery"
TOKEN_PATH = "/api/v1/auth/token"
LOGOUT_PATH = "/api/v1/auth/logout"


class MovableClock:
    """Real time until a test moves it (forward, or back to start in the past so that
    tokens issued after a move still verify against the real clock of the kit's verifier)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def cheap_hasher() -> Argon2PasswordHasher:
    # Real argon2id, with the smallest cost, so the suite stays fast.
    return Argon2PasswordHasher(argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def components(app: FastAPI) -> Components:
    found: Components = app.state.components
    return found


async def add_user(
    app: FastAPI,
    username: str = "alice",
    password: str = PASSWORD,
    roles: tuple[str, ...] = ("customer",),
    *,
    disabled: bool = False,
) -> User:
    parts = components(app)
    [user] = await ensure_users(
        uow=parts.uow,
        passwords=parts.passwords,
        policy=parts.password_policy,
        now=parts.clock(),
        users=[UserSpec(username, password, roles, disabled)],
    )
    return user


async def table_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in primary-key order: to prove a request wrote nothing."""
    database = Database(url)
    try:
        async with database.transaction(write=False) as transaction:
            rows: dict[str, list[dict[str, Any]]] = {}
            for table in metadata.sorted_tables:
                found = await transaction.all(
                    Query(select(table).order_by(*table.primary_key.columns))
                )
                rows[table.name] = [row._asdict() for row in found]
            return rows
    finally:
        await database.dispose()


def changed_tables(
    before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]]
) -> set[str]:
    """The tables whose rows differ: a refusal may touch only its own trace (the audit log,
    failed-login counters), never users, sessions or keys."""
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


async def audit_actions(url: str) -> list[str]:
    return [row["action"] for row in (await table_rows(url))["audit_events"]]


async def password_grant(
    client: httpx.AsyncClient,
    username: str = "alice",
    password: str = PASSWORD,
    *,
    headers: dict[str, str] | None = None,
    **extra: str,
) -> httpx.Response:
    return await client.post(
        TOKEN_PATH,
        data={"grant_type": "password", "username": username, "password": password, **extra},
        headers=headers,
    )


async def refresh_grant(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(
        TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name != "request_id"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def access_token(
    client: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD
) -> str:
    response = await password_grant(client, username, password)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def cli_runner(settings: AuthSettings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Runs commands in process with `settings` in the environment. The commands' own
    logging set-up is skipped: it would point this process's loggers at the runner's
    temporary streams (the subprocess test of `seed` covers it)."""
    for name, value in {
        "FLOTILLA_DATABASE_URL": settings.sqlalchemy_url,
        "FLOTILLA_VAR_DIR": str(settings.var_dir),
        "FLOTILLA_PROFILE": "test",
        "FLOTILLA_KEY_ENCRYPTION_KEY": settings.key_encryption_key.get_secret_value(),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli, "_log_to_stderr", lambda _: None)
    monkeypatch.setattr(service_cli, "configure_logging", lambda *_, **__: None)
    return CliRunner()


def printed(result: Result) -> Any:
    """The JSON a command printed last (unconfigured, the test's logs share stdout)."""
    assert result.exit_code in {0, 1}, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])
