"""The `world` of fakes each unit test of the service layer runs in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.orders.tests.unit.world import World


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    yield w
    for instance in w.instances:
        await instance.saga.close()
