"""What the contract suite serves: the service process of each framework, and the
keys and revocations it checks tokens against, served over HTTP as the auth service
would (`conftest.py` makes fixtures of them)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from flotilla_kit.devservers import free_port
from flotilla_kit.tls import client_context, ensure_dev_pki

_SERVICE = Path(__file__).with_name("contract_service.py")
# Every framework the chassis fits; a new one adds its builder to contract_service.KINDS.
KINDS = ["fastapi", "flask", "django"]
MAX_BODY_BYTES = 1024
_START_TIMEOUT_S = 20.0


@dataclass
class KeyServer:
    """Where the minter's JWKS and the revoked sessions are served
    (`flotilla_kit.testing.serving_keys`), as the auth service would serve them."""

    url: str


@dataclass
class Service:
    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    traces_dir: Path
    unready_file: Path
    client_tls: ssl.SSLContext | None = None

    def log_lines(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def spans(self) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for path in self.traces_dir.glob("*.jsonl")
            for line in path.read_text().splitlines()
        ]

    def stop(self) -> int:
        """SIGTERM, as Kubernetes stops an instance (it drains for `drain_s` first)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def _environment() -> dict[str, str]:
    """This process's environment without settings of its own (a developer's shell)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("FLOTILLA_", "OTEL_"))}


def start_service(
    kind: str, folder: Path, keys: KeyServer, drain_s: float = 0.0, *, tls: bool = False
) -> Service:
    """The service of `kind` serving on a free port (HTTPS with mutual TLS when `tls`:
    the dev PKI under `folder`, `Service.client_tls` presents the client's certificate)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path, traces_dir, unready_file = (
        folder / "service.log",
        folder / "traces",
        folder / "unready",
    )
    env = {
        **_environment(),
        "PYTHONUNBUFFERED": "1",
        "FLOTILLA_SERVICE_NAME": "contract",
        "FLOTILLA_PORT": str(port),
        "FLOTILLA_VAR_DIR": str(folder),
        "FLOTILLA_TRACES_DIR": str(traces_dir),
        "FLOTILLA_TRACE_EXPORT_DELAY_S": "0.1",
        "FLOTILLA_JWKS_URLS": json.dumps([f"{keys.url}/jwks"]),
        "FLOTILLA_REVOCATION_URLS": json.dumps([f"{keys.url}/revocations"]),
        "FLOTILLA_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "FLOTILLA_DRAIN_S": str(drain_s),
        "FLOTILLA_LOG_LEVEL": "info",
        "FLOTILLA_UNREADY_FILE": str(unready_file),
    }
    client_tls: ssl.SSLContext | None = None
    if tls:
        issued = ensure_dev_pki(folder / "pki", ["contract", "client"])
        ca = issued["contract"].ca
        env["FLOTILLA_TLS_CERT_FILE"] = str(issued["contract"].cert)
        env["FLOTILLA_TLS_KEY_FILE"] = str(issued["contract"].key)
        env["FLOTILLA_TLS_CA_FILE"] = str(ca)
        client_tls = client_context(ca, issued["client"].cert, issued["client"].key)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(_SERVICE), kind], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
    service = Service(kind, url, process, log_path, traces_dir, unready_file, client_tls)
    deadline = time.monotonic() + _START_TIMEOUT_S
    # The process says nothing when it listens: ask /livez until it answers.
    while True:
        if service.process.poll() is not None:
            raise RuntimeError(f"{kind} service exited at start:\n{log_path.read_text()}")
        try:
            answer = httpx.get(f"{url}/livez", timeout=1.0, verify=client_tls or True)
            if answer.status_code == 200:
                return service
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"{kind} service did not answer:\n{log_path.read_text()}")
        time.sleep(0.05)
