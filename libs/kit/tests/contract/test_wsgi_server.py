"""What `serve_wsgi` owes a supervisor that kills it: no worker left behind.

granian serves from a worker process forked by its own supervisor. A launcher (`flotilla
up`, a test, an operator) that SIGKILLs the process it started kills only the supervisor;
a worker left running would keep the port and its consumers, and the restarted instance
could not bind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from libs.kit.tests.contract.served import KeyServer, start_service

_WITHIN_S = 10.0


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: list[int] = []
    for task in tasks.iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return found


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for init to reap it counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("kind", ["flask", "django"])
def test_the_worker_dies_with_its_supervisor_under_sigkill(
    kind: str, tmp_path: Path, key_server: KeyServer
) -> None:
    service = start_service(kind, tmp_path, key_server)
    workers = _children(service.process.pid)
    try:
        (worker,) = workers
        service.process.send_signal(signal.SIGKILL)
        service.process.wait(timeout=10)
        deadline = time.monotonic() + _WITHIN_S
        while not _gone(worker) and time.monotonic() < deadline:
            time.sleep(0.05)  # another process's exit: nothing in this one to await
        assert _gone(worker), f"{kind}: worker {worker} outlived its supervisor"
    finally:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait(timeout=10)
        for pid in workers:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
