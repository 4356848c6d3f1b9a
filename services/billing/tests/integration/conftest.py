"""Billing against a real SQLite file and a real PostgreSQL (the root conftest's
`database_url`), migrated as the service migrates itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from flotilla_billing.bootstrap import MIGRATIONS
from flotilla_kit.db import Database
from flotilla_kit.migrations import upgrade_to_head


@pytest.fixture
async def migrated(database_url: str) -> str:
    await asyncio.to_thread(upgrade_to_head, database_url, MIGRATIONS)
    return database_url


@pytest.fixture
async def database(migrated: str) -> AsyncIterator[Database]:
    db = Database(migrated)
    try:
        yield db
    finally:
        await db.dispose()
