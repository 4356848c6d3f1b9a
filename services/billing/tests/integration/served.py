"""The billing service served for real: `python -m flotilla_billing serve` as its own
process (the kit's WSGI server, the Django chassis, the consumer in its lifespan), with
its settings in the environment, checking tokens against keys the test serves as the
auth service would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from flotilla_kit.devservers import free_port

_START_TIMEOUT_S = 30.0


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def serving(
    *, database_url: str, nats_url: str, keys_url: str, folder: Path, **settings: str
) -> Iterator[Served]:
    """The service until the block ends (then SIGTERM, as an orchestrator stops it)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FLOTILLA_", "OTEL_"))},
        "PYTHONUNBUFFERED": "1",
        "FLOTILLA_PROFILE": "test",
        "FLOTILLA_PORT": str(port),
        "FLOTILLA_VAR_DIR": str(folder),
        "FLOTILLA_DATABASE_URL": database_url,
        "FLOTILLA_NATS_URL": nats_url,
        "FLOTILLA_JWKS_URLS": json.dumps([f"{keys_url}/jwks"]),
        "FLOTILLA_DRAIN_S": "0",
        "FLOTILLA_TRACING_ENABLED": "false",
        **{f"FLOTILLA_{name.upper()}": value for name, value in settings.items()},
    }
    log_path = folder / "billing.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "flotilla_billing", "serve"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        # The process says nothing when it listens: ask /readyz (migrated, database up).
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"billing exited at start:\n{served.log()}")
            try:
                if httpx.get(f"{served.url}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"billing not ready within {_START_TIMEOUT_S} s:\n{served.log()}"
                )
            time.sleep(0.05)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"billing did not stop on SIGTERM:\n{served.log()}") from None
