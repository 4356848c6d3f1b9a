"""Helpers for the integration tests: a movable clock, a cheap hasher, raw table reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import argon2
import httpx
from fastapi import FastAPI
from sqlalchemy import select

from flotilla_auth.adapters.passwords import Argon2PasswordHasher
from flotilla_auth.adapters.tables import metadata
from flotilla_auth.domain.users import User
from flotilla_auth.service_layer.components import Components
from flotilla_auth.service_layer.users import UserSpec, ensure_users
from flotilla_kit.db import Database

PASSWORD = "correct horse battery"
TOKEN_PATH = "/api/v1/auth/token"
LOGOUT_PATH = "/api/v1/auth/logout"


class MovableClock:
    """Real time until a test moves it forward."""

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
        now=parts.clock(),
        users=[UserSpec(username, password, roles, disabled)],
    )
    return user


async def table_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in primary-key order: to prove a request wrote nothing."""
    database = Database(url)
    try:
        async with database.engine.connect() as connection:
            rows: dict[str, list[dict[str, Any]]] = {}
            for table in metadata.sorted_tables:
                result = await connection.execute(
                    select(table).order_by(*table.primary_key.columns)
                )
                rows[table.name] = [dict(row) for row in result.mappings()]
            return rows
    finally:
        await database.dispose()


async def password_grant(
    client: httpx.AsyncClient,
    username: str = "alice",
    password: str = PASSWORD,
    **extra: str,
) -> httpx.Response:
    return await client.post(
        TOKEN_PATH,
        data={"grant_type": "password", "username": username, "password": password, **extra},
    )


async def refresh_grant(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(
        TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name != "request_id"}
