"""The system's processes, grouped the way the cost table shows them, and their CPU time.

Every process under the supervisor counts, and the servers the state names (PostgreSQL,
NATS, Valkey) in case one runs outside its tree. Instances of one service (or ledger
shard's service), with the workers they fork (granian's, for a Flask or Django service),
are summed into one row; relays, the supervisor and each server keep
their own rows.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

from flotilla_cli.launcher.state import SystemState

__all__ = ["CpuSample", "SystemProcesses", "load_average"]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _parent(process: psutil.Process) -> int | None:
    try:
        return process.ppid()
    except psutil.Error:
        return None


def _group(process: psutil.Process, state: SystemState, names: dict[int, tuple[str, str]]) -> str:
    if process.pid == state.supervisor_pid:
        return "supervisor"
    for pid in (process.pid, _parent(process)):
        if pid in names:  # an instance, or a worker it forked (a WSGI server's)
            service, name = names[pid]
            return name if name.endswith("-relay") else service
    try:
        command = process.name()
    except psutil.Error:
        return "other"
    for server in ("postgres", "nats", "valkey", "prometheus"):
        if server in command:
            return server
    return command


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds (user + system) per pid, and when they were read."""

    at: float
    seconds: dict[int, float]


class SystemProcesses:
    def __init__(self, state: SystemState) -> None:
        self._state = state
        self.groups: dict[int, str] = {}
        self._processes: dict[int, psutil.Process] = {}
        self.refresh(state)

    def refresh(self, state: SystemState) -> None:
        """Look the processes up again (an instance restarted since has a new pid)."""
        self._state = state
        names = {i.pid: (i.service, i.name) for i in state.instances if i.pid is not None}
        found: dict[int, psutil.Process] = {}
        for pid in (state.supervisor_pid, state.postgres_pid, state.nats_pid, state.valkey_pid):
            if pid is None:
                continue
            try:
                root = psutil.Process(pid)
                for process in [root, *root.children(recursive=True)]:
                    found.setdefault(process.pid, process)
            except psutil.Error:
                continue
        self._processes = found
        self.groups = {pid: _group(p, state, names) for pid, p in found.items()}

    def sample(self) -> CpuSample:
        seconds: dict[int, float] = {}
        for pid, process in self._processes.items():
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            seconds[pid] = times.user + times.system
        return CpuSample(time.monotonic(), seconds)

    def spent(self, before: CpuSample, after: CpuSample) -> dict[str, float]:
        """CPU seconds per group between two samples (a process gone meanwhile counts
        nothing for the interval)."""
        by_group: dict[str, float] = {}
        for pid, start in before.seconds.items():
            end = after.seconds.get(pid)
            if end is None:
                continue
            group = self.groups[pid]
            by_group[group] = by_group.get(group, 0.0) + max(0.0, end - start)
        return dict(sorted(by_group.items(), key=lambda kv: -kv[1]))
