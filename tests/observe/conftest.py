"""One running system for every observability check (metrics, logs, traces): starting a
whole system costs tens of seconds, so the checks that only read it share one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.system import RunningSystem, start_system


@pytest.fixture(scope="session")
def observed_system() -> Iterator[RunningSystem]:
    yield from start_system("sqlite")
