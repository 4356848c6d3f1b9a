"""The forking parent (`flotilla_cli.launcher.forking`): a forked command runs with its own
arguments, environment and output, its exit status comes back, and it dies with the
process that forked it, even one killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from flotilla_cli.launcher.forking import fork_command

# A stand-in service: `python -m flotilla_standin <argv>`, found through PYTHONPATH.
_STANDIN = """
import os, sys, time

def main() -> None:
    print("argv", sys.argv[1:], "env", os.environ.get("STANDIN_VALUE"), flush=True)
    if sys.argv[1:] == ["wait"]:
        time.sleep(600)
    sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
"""


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "flotilla_standin" / "entrypoints"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text(_STANDIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


async def test_a_forked_command_gets_its_arguments_environment_and_output(
    standin: Path,
) -> None:
    log = standin / "standin.log"
    process = await fork_command(
        "standin", ["7"], env={"STANDIN_VALUE": "mine"}, name="standin-0", stdout=log
    )
    assert await process.wait() == 7
    assert process.returncode == 7
    assert log.read_text() == "argv ['7'] env mine\n"


_DRIVER = """
import asyncio, sys
from pathlib import Path
from flotilla_cli.launcher.forking import fork_command

async def main() -> None:
    child = await fork_command(
        "standin", ["wait"], env={}, name="standin-1", stdout=Path(sys.argv[1])
    )
    print(child.pid, flush=True)
    await child.wait()

asyncio.run(main())
"""


def test_a_forked_command_dies_with_the_supervisor_killed_with_sigkill(standin: Path) -> None:
    with subprocess.Popen(  # stands for the supervisor
        [sys.executable, "-c", textwrap.dedent(_DRIVER), str(standin / "standin.log")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(standin), *sys.path])},
    ) as driver:
        try:
            assert driver.stdout is not None
            child = psutil.Process(int(driver.stdout.readline()))
            assert child.is_running()
        finally:
            driver.send_signal(signal.SIGKILL)
    # The forking parent sees its supervisor gone and exits; the kernel then kills the
    # child (PR_SET_PDEATHSIG). Another process's exit: awaited with a deadline.
    gone, alive = psutil.wait_procs([child], timeout=15)
    assert alive == [], f"{child.pid} outlived the supervisor"
    assert gone == [child]
