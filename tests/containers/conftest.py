"""The images built for real and the compose stack run on rootful podman (`make
test-containers`; the default `make test` run collects it too). Skipped, with the reason,
where podman cannot be had. Each step is printed as it happens, with the time since the
start: the first run makes the Debian images and builds everything (minutes), later runs
build from the cache."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flotilla_kit.devservers import free_port
from flotilla_kit.manifest import load_manifest
from tests.containers.podman import Podman, engine_problem
from tests.containers.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
TAG = "test"  # the service images' tag here, so a developer's `dev` images stay theirs
SERVICES = sorted(service.name for service in load_manifest().services)
UP_WITHIN_S = 300.0

Say = Callable[[str], None]


@pytest.fixture(scope="session")
def say(request: pytest.FixtureRequest) -> Say:
    """Writes at once to the terminal, past pytest's capture."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    started = time.monotonic()

    def write(message: str) -> None:
        line = f"[containers {time.monotonic() - started:6.1f} s] {message}"
        if capture is None or reporter is None:  # pragma: no cover - -p no:terminal
            print(line, file=sys.__stderr__, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    return write


@pytest.fixture(scope="session")
def podman() -> Podman:
    problem = engine_problem()
    if problem is not None:
        pytest.skip(f"tests/containers: {problem}")
    return Podman()


@pytest.fixture(scope="session")
def images(podman: Podman, say: Say) -> dict[str, str]:
    """The six service images, built hermetically from build/wheels on a Python base made
    from Debian packages, and the stand-ins: service -> image."""
    say("building the images (tools/containers/build_images.py --standins)")
    started = time.monotonic()
    output = []
    with subprocess.Popen(
        [sys.executable, str(ROOT / "tools/containers/build_images.py"), "--engine", "podman",
         "--standins", "--tag", TAG],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=Podman.environment(),
    ) as build:  # fmt: skip
        assert build.stdout is not None
        for line in build.stdout:
            output.append(line)
            if step := re.match(r"==> (?:\[[ \d.]+s\] )?(.*)", line.rstrip()):
                say(f"  {step.group(1)}")
    if build.returncode != 0:
        pytest.fail("building the images failed:\n" + "".join(output[-40:]))
    say(f"images built in {time.monotonic() - started:.0f} s")
    return {service: f"localhost/flotilla-{service}:{TAG}" for service in SERVICES}


# Module scope (one module uses it): the stack is removed once its tests are done, not
# left running (20 containers) through the rest of the session. ("package" does not do
# that here: tests/ has no __init__.py, so its package is the session.)
@pytest.fixture(scope="module")
def stack(
    images: dict[str, str], podman: Podman, say: Say, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """compose.yaml with the stand-ins, up and healthy; everything of it (containers,
    volumes, network) is removed afterwards, also when starting it failed."""
    stack = Stack(
        project=f"flotilla-test-{os.getpid()}", folder=tmp_path_factory.mktemp("compose"),
        say=say, tag=TAG, gateway_port=free_port(), prometheus_port=free_port(),
    )  # fmt: skip
    stack.write_env()
    started = time.monotonic()
    try:
        stack.up(deadline=started + UP_WITHIN_S)
        say(f"stack up and healthy in {time.monotonic() - started:.0f} s")
        yield stack
    finally:
        stopping = time.monotonic()
        stack.down()
        say(f"stack removed in {time.monotonic() - stopping:.0f} s")
