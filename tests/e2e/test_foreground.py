"""`flotilla up` in the foreground: Ctrl-C (SIGINT) stops everything it started."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from flotilla_kit.devservers import free_port
from tests.e2e.system import alive

pytestmark = pytest.mark.e2e


def _status(var_dir: Path) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "flotilla_cli", "status", "--json", "--var-dir", str(var_dir)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    status: dict[str, object] = json.loads(result.stdout)
    return status


def test_ctrl_c_stops_every_process() -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="flotilla-e2e-fg-"))
    up = subprocess.Popen(
        [sys.executable, "-m", "flotilla_cli", "up", "--instances", "1",
         "--gateway-port", str(free_port()), "--var-dir", str(var_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        status = _status(var_dir)
        # Another process's state: polled, there is nothing to subscribe to.
        while status.get("phase") != "running":
            assert up.poll() is None, up.communicate()[0]
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.3)
            status = _status(var_dir)
        instances = status["instances"]
        assert isinstance(instances, list)
        pids = [status["supervisor_pid"], *(i["pid"] for i in instances)]

        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
        assert up.returncode == 0, output
        assert "Stopped." in output
        assert [pid for pid in pids if isinstance(pid, int) and alive(pid)] == []
    finally:
        if up.poll() is None:
            up.kill()
            subprocess.run(
                [sys.executable, "-m", "flotilla_cli", "down", "--var-dir", str(var_dir)],
                check=False, timeout=60,
            )  # fmt: skip
        shutil.rmtree(var_dir, ignore_errors=True)
