"""`flotilla bench cost` without a system: the figures of a row, the targets, the process
groups, and the table as printed."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from typing import Any

import psutil
import pytest
from rich.console import Console

from flotilla_cli.bench.cost import TARGETS, render
from flotilla_cli.bench.cost.load import Phase
from flotilla_cli.bench.cost.report import operation_row
from flotilla_cli.bench.system_processes import CpuSample, SystemProcesses
from flotilla_cli.launcher.state import InstanceState, SystemState


def _phase(operation: str, done: int, seconds: float = 10.0, **errors: int) -> Phase:
    phase = Phase(operation, 16, latencies_s=[0.001 * (n + 1) for n in range(done)])
    phase.errors = Counter(errors)
    phase.seconds = seconds
    return phase


def test_a_row_divides_the_cpu_of_each_group_by_the_operations_done() -> None:
    row = operation_row(
        _phase("local", 1_000, **{"503": 2}), {"payments": 2.5, "accounts": 1.5, "gateway": 0.3}
    )
    assert row["done"] == 1_000
    assert row["ops_per_s"] == 100.0
    assert row["cpu_ms_per_op"] == pytest.approx(4.3)
    assert row["cpu_ms_per_op_by_group"] == {"payments": 2.5, "accounts": 1.5, "gateway": 0.3}
    assert row["busy_cores"] == pytest.approx(0.43)
    assert (row["p50_ms"], row["p99_ms"]) == (500.0, 990.0)
    assert (row["errors"], row["error_kinds"]) == (2, {"503": 2})
    # 4.3 ms <= 6 ms: met; 100/s < 250/s and p99 990 ms > 150 ms: not met.
    assert row["met"] == {"cpu_ms_per_op": True, "ops_per_s": False, "p99_ms": False}
    assert row["targets"] == {"cpu_ms_per_op": 6.0, "ops_per_s": 250.0, "p99_ms": 150.0}


def test_a_phase_with_nothing_done_has_no_figures_and_meets_nothing() -> None:
    row = operation_row(_phase("order", 0, timeout=3), {"orders": 1.0})
    assert (row["cpu_ms_per_op"], row["p50_ms"], row["ops_per_s"]) == (None, None, 0.0)
    assert row["met"] == {"cpu_ms_per_op": False, "ops_per_s": False, "p99_ms": False}


def test_every_operation_has_its_targets() -> None:
    assert TARGETS == {
        "read": (1.5, 800.0, 50.0),
        "local": (6.0, 250.0, 150.0),
        "cross": (12.0, 120.0, 250.0),
        "order": (30.0, 50.0, 1000.0),
    }


def test_processes_are_grouped_by_service_with_relays_and_the_supervisor_on_their_own() -> None:
    me = os.getpid()
    state = SystemState(
        phase="running", supervisor_pid=me, gateway_url="https://127.0.0.1:1", database="sqlite",
        started_at=time.time(),
    )  # fmt: skip
    processes = SystemProcesses(state)
    assert processes.groups[me] == "supervisor"
    relay = InstanceState(
        service="payments", name="payments-relay", port=0, url="", pid=me, command="relay"
    )
    named = state.model_copy(update={"supervisor_pid": psutil.Process(me).ppid()})
    named.instances = [relay]
    processes.refresh(named)
    assert processes.groups[me] == "payments-relay"
    before = CpuSample(0.0, {me: 1.0, 99_999_999: 5.0})
    after = CpuSample(1.0, {me: 1.25})  # the other process went away: it counts nothing
    assert processes.spent(before, after) == {"payments-relay": 0.25}


def _report() -> dict[str, Any]:
    rows = [operation_row(_phase(op, 500), {"accounts": 0.5, "gateway": 0.1}) for op in TARGETS]
    for row in rows:
        row["load_average"] = [1.0, 1.0, 1.0]
    return {
        "options": {"database": "sqlite", "shards": 2, "instances": 2, "seconds": 15.0,
                    "warmup_s": 3.0},
        "machine": {"cpus": 2, "cpu": "test cpu", "python": "3.11"},
        "load_average_before": [0.5, 0.4, 0.3],
        "idle": {"seconds": 10.0, "percent_of_a_core": 4.2,
                 "percent_of_a_core_by_group": {"accounts": 3.0, "gateway": 1.2}},
        "operations": rows,
    }  # fmt: skip


def test_the_table_names_every_operation_group_and_the_idle_cpu() -> None:
    console = Console(record=True, width=400)
    render(_report(), console)
    text = console.export_text()
    for expected in (
        "account read", "local transfer", "cross-shard transfer (2PC)", "order to CONFIRMED",
        "accounts", "gateway", "idle: 4.2 % of a core", "load average before [0.5, 0.4, 0.3]",
    ):  # fmt: skip
        assert expected in text


def test_a_worker_an_instance_forked_counts_for_its_service() -> None:
    # granian serves a Flask or Django service from a worker process of the instance's.
    me = os.getpid()
    instance = InstanceState(service="billing", name="billing-0", port=1, url="", pid=me)
    state = SystemState(
        phase="running", supervisor_pid=psutil.Process(me).ppid(),
        gateway_url="https://127.0.0.1:1", database="sqlite", started_at=time.time(),
        instances=[instance],
    )  # fmt: skip
    worker = subprocess.Popen(["sleep", "30"])
    try:
        processes = SystemProcesses(state)
        assert processes.groups[me] == "billing"
        assert processes.groups[worker.pid] == "billing"
    finally:
        worker.kill()
        worker.wait()
