"""A running Flotilla system, as the e2e and chaos tests drive it."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from flotilla_kit.devservers import free_port
from flotilla_kit.tls import client_context

__all__ = ["RunningSystem", "alive", "start_system"]


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass(frozen=True)
class RunningSystem:
    var_dir: Path
    gateway_url: str

    @property
    def ca(self) -> str:
        return str(self.var_dir / "tls" / "ca.pem")

    def flotilla(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flotilla_cli", *args, "--var-dir", str(self.var_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "COLUMNS": "160", **(env or {})},
        )

    def status(self) -> dict[str, Any]:
        result = self.flotilla("status", "--json")
        status: dict[str, Any] = json.loads(result.stdout)
        return status

    def _demo_user(self, username: str) -> dict[str, Any]:
        credentials = json.loads((self.var_dir / "demo-credentials.json").read_text())
        user: dict[str, Any] = next(u for u in credentials["users"] if u["username"] == username)
        return user

    def password(self, username: str) -> str:
        return str(self._demo_user(username)["password"])

    def user_id(self, username: str) -> str:
        return str(self._demo_user(username)["id"])

    def instance_urls(self, service: str, shard: int | None = None) -> list[str]:
        """The URLs of a service's serving instances (of one ledger shard, if given);
        its relay serves no HTTP."""
        return [
            i["url"]
            for i in self.status()["instances"]
            if i["service"] == service
            and i["command"] == "serve"
            and (shard is None or i["shard"] == shard)
        ]

    def operator_tls(self) -> ssl.SSLContext:
        """Our CA, and the operator's client certificate (services require one: mTLS)."""
        tls = self.var_dir / "tls"
        return client_context(
            tls / "ca.pem", tls / "flotilla-cli.pem", tls / "flotilla-cli-key.pem"
        )

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.gateway_url, verify=client_context(Path(self.ca)), timeout=10
        )

    def token(self, username: str) -> str:
        with self.client() as client:
            response = client.post(
                "/api/v1/auth/token",
                data={
                    "grant_type": "password",
                    "username": username,
                    "password": self.password(username),
                },
            )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


def start_system(
    database: str,
    instances: int = 2,
    env: dict[str, str] | None = None,
    gateways: int = 1,
) -> Iterator[RunningSystem]:
    """`env` reaches every instance (settings the launcher does not set itself)."""
    var_dir = Path(tempfile.mkdtemp(prefix="flotilla-e2e-"))
    var_dir.chmod(0o755)  # the embedded PostgreSQL runs as another user when we are root
    system = RunningSystem(var_dir, f"https://127.0.0.1:{(port := free_port())}")
    started = system.flotilla(
        "up", "--detach", "--instances", str(instances), "--db", database,
        "--gateway-port", str(port), "--gateways", str(gateways), "--timeout", "180",
        timeout=300, env=env,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield system
    finally:
        stopped = system.flotilla("down")
        if stopped.returncode == 0 and not os.environ.get("FLOTILLA_KEEP_E2E_VAR"):
            shutil.rmtree(var_dir, ignore_errors=True)
