"""The whole system, started the way a user starts it: `flotilla up --detach`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.system import RunningSystem, start_system


@pytest.fixture(scope="module")
def system() -> Iterator[RunningSystem]:
    yield from start_system("sqlite")
