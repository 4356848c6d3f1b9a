"""Fixtures of the contract suite: one service process per framework
(`served.KINDS`), each verifying tokens against keys and revocations the test serves."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from flotilla_kit.testing import REVOKED_SESSION, TokenMinter, serving_keys
from libs.kit.tests.contract.served import KINDS, KeyServer, Service, start_service


@pytest.fixture(scope="session")
def minter() -> TokenMinter:
    return TokenMinter()


@pytest.fixture(scope="session")
def key_server(minter: TokenMinter) -> Iterator[KeyServer]:
    with serving_keys(minter, revoked_sessions=[REVOKED_SESSION]) as url:
        yield KeyServer(url)


@pytest.fixture(scope="module", params=KINDS)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, key_server: KeyServer
) -> Iterator[Service]:
    kind: str = request.param
    running = start_service(kind, tmp_path_factory.mktemp(kind), key_server)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=10.0) as http:
        yield http
