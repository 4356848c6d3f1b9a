"""The `stack` fixture: upstream servers and a gateway in front of them, for one test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths

from .harness import Stack
from .nameserver import Nameserver


@pytest.fixture
async def stack(
    tmp_path: Path, dev_pki: Callable[[str], CertificatePaths], tokens: TokenMinter
) -> AsyncIterator[Stack]:
    built = Stack(tmp_path, dev_pki, tokens.jwks)
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
async def nameserver() -> AsyncIterator[Nameserver]:
    """A nameserver on 127.0.0.1 whose answers the test sets."""
    server = await Nameserver.start()
    try:
        yield server
    finally:
        server.close()
