"""Finding and stopping the processes a system left behind (supervisor, instances,
PostgreSQL, Valkey, NATS), by pid, without ever signalling an unrelated process that
reused a pid."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from flotilla_cli.launcher.state import SystemState

__all__ = ["is_ours", "leftover_pids", "stop_pids", "supervisor_alive"]


def is_ours(pid: int | None, marker: str) -> bool:
    """True when `pid` runs and its command line contains `marker`."""
    if not pid:
        return False
    try:
        return any(marker in part for part in psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def supervisor_alive(state: SystemState | None) -> bool:
    return state is not None and is_ours(state.supervisor_pid, "flotilla_cli.launcher.supervisor")


def leftover_pids(state: SystemState, postgres_data: Path) -> list[int]:
    pids = [i.pid for i in state.instances if i.pid and is_ours(i.pid, "flotilla_")]
    pid_file = postgres_data / "postmaster.pid"
    if pid_file.exists():
        with contextlib.suppress(ValueError, IndexError, OSError):
            postmaster = int(pid_file.read_text().splitlines()[0])
            if is_ours(postmaster, "postgres"):
                pids.append(postmaster)
    if state.valkey_pid and is_ours(state.valkey_pid, "valkey"):
        pids.append(state.valkey_pid)
    if state.nats_pid and is_ours(state.nats_pid, "nats-server"):
        pids.append(state.nats_pid)
    return pids


def stop_pids(pids: Iterable[int], grace_s: float) -> list[int]:
    """SIGTERM, wait up to `grace_s`, then SIGKILL. Returns the pids that needed SIGKILL."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if psutil.pid_exists(pid) and _not_zombie(pid)]
        if alive:
            time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return alive


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
