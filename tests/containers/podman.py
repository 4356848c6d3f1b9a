"""Rootful podman for tests/containers: found (or installed from Debian's packages, as
root with apt-get), and driven through its command line with our containers.conf."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["CONTAINERS_CONF", "Podman", "PodmanError", "engine_problem"]

CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
_PACKAGES = ("podman", "mmdebstrap", "runc")
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class PodmanError(RuntimeError):
    pass


def _missing() -> list[str]:
    return [p for p in _PACKAGES if shutil.which(p, path=_SYSTEM_PATH) is None]


def engine_problem() -> str | None:
    """Why the containers cannot run here (the reason a skip names), or None. Installs
    podman, mmdebstrap and runc from Debian's packages when they are missing and we may
    (root with apt-get, as on CI and the dev machines)."""
    if os.geteuid() != 0:
        return "needs rootful podman: run as root (Debian: apt-get install podman mmdebstrap runc)"
    if _missing() and shutil.which("apt-get"):
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": _SYSTEM_PATH}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *_PACKAGES]
        done = subprocess.run(install, capture_output=True, check=False, timeout=900, env=env)
        if done.returncode != 0:  # an old package list: fetch it once, then again
            subprocess.run(["apt-get", "update"], capture_output=True, check=False,
                           timeout=900, env=env)  # fmt: skip
            subprocess.run(install, capture_output=True, check=False, timeout=900, env=env)
    if missing := _missing():
        return f"{', '.join(missing)} missing: apt-get install {' '.join(_PACKAGES)} (Debian)"
    info = subprocess.run(
        ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        capture_output=True, text=True, check=False, timeout=120, env=Podman.environment(),
    )  # fmt: skip
    if info.returncode != 0:
        return f"podman does not work here: {info.stderr.strip()[:300]}"
    return None


class Podman:
    """The `podman` command with tests/containers/containers.conf."""

    @staticmethod
    def environment() -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{os.environ.get('PATH', '')}:{_SYSTEM_PATH}",
            "CONTAINERS_CONF": str(CONTAINERS_CONF),
        }

    def run(
        self, *args: str, input_text: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args], input=input_text, capture_output=True, text=True, check=False,
            timeout=timeout, env=self.environment(),
        )  # fmt: skip
        if check and result.returncode != 0:
            raise PodmanError(
                f"podman {' '.join(args[:4])} failed ({result.returncode}): "
                f"{result.stderr.strip()[-2000:]}"
            )
        return result

    def inspect(self, name: str) -> dict[str, Any]:
        (found,) = json.loads(self.run("inspect", name).stdout)
        info: dict[str, Any] = found
        return info

    def healthy(self, name: str) -> bool:
        """Runs the container's healthcheck now: podman runs them on systemd timers, and
        without systemd (containers, CI) only when asked."""
        return self.run("healthcheck", "run", name, check=False, timeout=60).returncode == 0

    def await_healthy(self, names: list[str], deadline: float, diagnose: Any) -> None:
        pending = list(names)
        while pending:
            pending = [name for name in pending if not self.healthy(name)]
            if pending and time.monotonic() > deadline:
                raise PodmanError(f"not healthy in time: {pending}\n{diagnose(pending)}")
            if pending:
                time.sleep(0.5)  # the healthcheck is another process's state: no event

    def await_exit(self, name: str, timeout: float) -> int:
        """The exit code, once the container has stopped (podman wait blocks until then)."""
        return int(self.run("wait", name, timeout=timeout).stdout.strip() or -1)

    def await_running(self, name: str, timeout: float) -> None:
        self.run("wait", "--condition=running", name, timeout=timeout)

    def proc_status(self, name: str) -> dict[str, str]:
        """/proc/<pid>/status of the container's main process, as the host sees it."""
        pid = self.inspect(name)["State"]["Pid"]
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        return dict(line.split(":\t", 1) for line in lines if ":\t" in line)
