"""Each image's HEALTHCHECK command, run as Docker would run it (without a Docker engine),
against live instances of the shared running system: it passes while an instance answers
/livez over mutual TLS, and fails when nothing listens."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from flotilla_kit.devservers import free_port
from tests.deploy.dockerfiles import SERVICES, dockerfile, exec_form
from tests.e2e.system import RunningSystem


@pytest.mark.e2e
@pytest.mark.parametrize("service", SERVICES)
def test_the_healthcheck_command_passes_on_a_live_instance_and_fails_on_none(
    observed_system: RunningSystem, service: str
) -> None:
    healthcheck = dockerfile(service)[-1].last("HEALTHCHECK") or ""
    argv = exec_form(healthcheck.partition(" CMD ")[2])
    assert argv is not None
    instance = next(
        i for i in observed_system.status()["instances"]
        if i["service"] == service and i["command"] == "serve"
    )  # fmt: skip
    tls = observed_system.var_dir / "tls"
    env = {
        "PATH": "/usr/bin:/bin",
        "FLOTILLA_TLS_CERT_FILE": str(tls / f"{service}.pem"),
        "FLOTILLA_TLS_KEY_FILE": str(tls / f"{service}-key.pem"),
        "FLOTILLA_PORT": str(instance["port"]),
    }
    python = shutil.which("python3") or sys.executable
    run = [python, *argv[1:]]
    alive = subprocess.run(run, env=env, capture_output=True, text=True, timeout=20, check=False)
    assert alive.returncode == 0, alive.stderr
    env["FLOTILLA_PORT"] = str(free_port())
    dead = subprocess.run(run, env=env, capture_output=True, text=True, timeout=20, check=False)
    assert dead.returncode != 0
