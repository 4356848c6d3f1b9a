from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flotilla_kit.clock import ManualClock
from flotilla_kit.testing import TokenMinter

from .harness import Instance, Pki, running_inventory


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def inventory(
    database_url: str, tokens: TokenMinter, clock: ManualClock
) -> AsyncIterator[Instance]:
    """The REST API on SQLite and on PostgreSQL, with a clock the test moves."""
    async with running_inventory(database_url, tokens=tokens, clock=clock) as instance:
        yield instance


@pytest.fixture
async def served(
    database_url: str, tokens: TokenMinter, dev_pki: Pki, clock: ManualClock
) -> AsyncIterator[Instance]:
    """REST and gRPC (mutual TLS, real tokens) on SQLite and on PostgreSQL."""
    async with running_inventory(
        database_url, tokens=tokens, dev_pki=dev_pki, clock=clock
    ) as instance:
        yield instance
