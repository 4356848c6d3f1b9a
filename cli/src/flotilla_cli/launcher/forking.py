"""Instances forked from one warm parent instead of started as new interpreters.

Every instance of `flotilla up` used to be `python -m flotilla_<service> serve`: a fresh
interpreter that imported FastAPI, SQLAlchemy, pydantic, gRPC, OpenTelemetry and the
service (1.1-1.3 s of CPU each on this 2-core machine, 87-94 MiB of memory of its own).
Now the supervisor keeps a forking parent (the standard library's `forkserver`) that
imports every service once (1.4 s) and moves what it imported out of the garbage
collector's sight (`gc.freeze`); each instance, relay, migration or seed is a fork of it
that runs the very same command line (`flotilla_<service>.entrypoints.cli`, with its own
environment and log) and shares the parent's pages until it writes them: about 0.2 s of
CPU to start and 25-37 MiB of its own.

Dying together: the forking parent exits when the supervisor does (it watches a pipe from
it), and each child gets SIGKILL when the forking parent dies (PR_SET_PDEATHSIG), so no
instance outlives a supervisor killed with SIGKILL. A child's exit status comes back
through the forking parent; `ForkedProcess` offers what the supervisor used of
`asyncio.subprocess.Process` (pid, returncode, wait, send_signal, kill).

The children share the parent's hash seed (as the workers of any preforking server do);
`random` is reseeded in each child by the standard library. Kubernetes and the service
commands (`python -m flotilla_<service> serve`) do not fork: one process per pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterable, Mapping
from multiprocessing.context import ForkServerProcess
from multiprocessing.forkserver import ensure_running, set_forkserver_preload
from pathlib import Path

from flotilla_kit.devservers import die_with_parent

__all__ = ["ForkedProcess", "fork_command", "start_forking_parent"]

_PR_SET_NAME = 15
_context = multiprocessing.get_context("forkserver")
_starting = threading.Lock()


def start_forking_parent(services: Iterable[str]) -> None:
    """Blocking (1-2 s, run it in a thread): start the forking parent with every
    service's command line imported, unless it runs already."""
    set_forkserver_preload(
        [f"flotilla_{service}.entrypoints.cli" for service in services]
        # multiprocessing runs the supervisor's module again in every child (as its
        # `__mp_main__`): imported here, its imports are the parent's, shared, instead of
        # each child's own (137 MiB less over 16 instances, measured).
        + ["flotilla_cli.launcher.supervisor"]
        + ["flotilla_cli.launcher.warm_parent"]  # last: freezes what the others loaded
    )
    ensure_running()


def _run_command(
    service: str, argv: list[str], env: dict[str, str], name: str, stdout: str, stderr: str
) -> None:
    """In the child: become `python -m flotilla_<service> *argv` with `env`."""
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the forking parent died before the line above
        os._exit(1)
    # multiprocessing gives every child the write end of the pipe that keeps the forking
    # parent alive (so that children may fork more): ours do not, and holding it would
    # keep the parent, and so the children, alive after the supervisor died.
    alive = multiprocessing.forkserver._forkserver._forkserver_alive_fd  # type: ignore[attr-defined]
    if alive is not None:
        os.close(alive)
        multiprocessing.forkserver._forkserver._forkserver_alive_fd = None  # type: ignore[attr-defined]
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15])
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, stdout), (2, stderr)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.argv = [f"flotilla_{service}", *argv]
    importlib.import_module(f"flotilla_{service}.entrypoints.cli").main()


class ForkedProcess:
    """A child of the forking parent, watched from the supervisor's event loop."""

    def __init__(self, process: ForkServerProcess) -> None:
        self._process = process
        assert process.pid is not None
        self.pid: int = process.pid
        self.returncode: int | None = None
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = loop.create_future()
        self._sentinel = process.sentinel
        loop.add_reader(self._sentinel, self._on_exit)

    def _on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self._sentinel)
        self._process.join(0)
        code = self._process.exitcode
        self.returncode = 255 if code is None else code
        self._process.close()
        if not self._exited.done():
            self._exited.set_result(self.returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


async def fork_command(
    service: str,
    argv: list[str],
    *,
    env: Mapping[str, str],
    name: str,
    stdout: Path,
    stderr: Path | None = None,
) -> ForkedProcess:
    """Fork `python -m flotilla_<service> *argv` from the forking parent (started first
    if it is not running; the first fork waits for its imports); its output goes to the
    files given."""
    process = _context.Process(
        target=_run_command,
        args=(service, argv, dict(env), name, str(stdout), str(stderr or stdout)),
        name=name,
        daemon=False,
    )
    await asyncio.to_thread(_start, process)
    return ForkedProcess(process)


def _start(process: ForkServerProcess) -> None:
    with _starting:  # multiprocessing's bookkeeping of children is not made for threads
        process.start()
