from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from flotilla_accounts.adapters.tables import (
    accounts,
    audit_events,
    branches,
    entries,
    idempotency_keys,
    local_transfers,
    postings,
)
from flotilla_accounts.bootstrap import build_app
from flotilla_accounts.settings import AccountsSettings
from flotilla_kit.db import Database, Query
from flotilla_kit.testing import TokenMinter


@pytest.fixture
async def app(database_url: str, tokens: TokenMinter) -> AsyncIterator[FastAPI]:
    settings = AccountsSettings(database_url=database_url, profile="test")
    application = build_app(settings, verifier=tokens.verifier())
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://accounts") as c:
        yield c


@pytest.fixture
def as_user(tokens: TokenMinter) -> Callable[..., dict[str, str]]:
    def headers(subject: str = "alice", *roles: str) -> dict[str, str]:
        token = tokens.mint(subject, list(roles) or ["customer"])
        return {"Authorization": f"Bearer {token}"}

    return headers


_COUNTS = [
    Query(select(func.count().label("rows")).select_from(table))
    for table in (
        accounts,
        postings,
        entries,
        idempotency_keys,
        audit_events,
        branches,
        local_transfers,
    )
]
_BALANCES = Query(
    select(accounts.c.id, accounts.c.balance_minor, accounts.c.held_minor).order_by(accounts.c.id)
)
_STATES = Query(
    select(branches.c.transfer_id, branches.c.branch_id, branches.c.status).order_by(
        branches.c.transfer_id, branches.c.branch_id
    )
)


async def take_snapshot(database: Database) -> tuple[object, ...]:
    """Everything a request could have changed, to prove a refused one changed nothing."""
    async with database.transaction(write=False) as tx:
        counts = [await tx.scalar(count) for count in _COUNTS]
        balances = await tx.all(_BALANCES)
        states = await tx.all(_STATES)
    return (*counts, tuple(map(tuple, balances)), tuple(map(tuple, states)))


@pytest.fixture
def snapshot(app: FastAPI) -> Callable[[], object]:
    database: Database = app.state.database

    async def take() -> tuple[object, ...]:
        return await take_snapshot(database)

    return take
