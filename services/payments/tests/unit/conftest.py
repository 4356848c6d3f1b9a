"""The `world` of fakes each unit test of the service layer runs in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.payments.tests.unit.world import World


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    yield w
    for coordinator in w.coordinators:
        await coordinator.close()
