"""`flotilla bench cost`: a fresh system, its idle CPU, then each operation in turn."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console

from flotilla_cli.bench.cost.load import LOAD_TEST_ROLE, OPERATIONS, run_phase, set_up
from flotilla_cli.bench.cost.report import operation_row
from flotilla_cli.bench.system_processes import CpuSample, SystemProcesses, load_average
from flotilla_cli.launcher.machine import machine
from flotilla_cli.launcher.scratch_system import scratch_system
from flotilla_cli.launcher.state import SystemState
from flotilla_kit.tls import client_context

__all__ = ["BenchOptions", "run_cost_bench"]

_HIGH_LIMIT = "1000000000"


@dataclass(frozen=True)
class BenchOptions:
    database: str = "sqlite"
    seconds: float = 15.0  # measured, per operation
    warmup_s: float = 3.0  # per operation, not counted
    idle_s: float = 10.0
    concurrency: int = 16
    order_concurrency: int = 8
    customers: int = 16
    shards: int = 2
    instances: int = 2
    operations: tuple[str, ...] = tuple(OPERATIONS)


def _env() -> dict[str, str]:
    """Every request of the bench comes from 127.0.0.1, so the per-IP limit is lifted in
    the bench's own system (a fresh one nobody else uses); the per-identity limit stays at
    its default for every identity but the bench's customers, whose `load-test` role the
    gateway exempts. The buckets are still checked on every request."""
    return {
        "FLOTILLA_RATE_LIMIT_IP_RPS": _HIGH_LIMIT,
        "FLOTILLA_RATE_LIMIT_IP_BURST": _HIGH_LIMIT,
        "FLOTILLA_RATE_LIMIT_EXEMPT_ROLES": json.dumps([LOAD_TEST_ROLE]),
    }


async def run_cost_bench(options: BenchOptions, console: Console) -> dict[str, Any]:
    began = time.monotonic()
    report: dict[str, Any] = {
        "benchmark": "cost per operation through the gateway",
        "options": {**asdict(options), "operations": list(options.operations)},
        "machine": machine(),
    }
    with scratch_system(
        database=options.database, shards=options.shards, instances=options.instances,
        env=_env(), console=console,
    ) as running:  # fmt: skip
        started = time.monotonic()
        tls = client_context(running.layout.tls / "ca.pem")
        gateway = running.state.gateway_url
        with console.status(f"{options.customers} customers, their accounts, stock"):
            shop = await set_up(gateway, tls, running.password("ada"), options.customers)
        processes = SystemProcesses(running.state)
        report["load_average_before"] = load_average()
        with console.status(f"the system's idle CPU, {options.idle_s:g} s"):
            before = processes.sample()
            await asyncio.sleep(options.idle_s)
            after = processes.sample()
        idle = processes.spent(before, after)
        seconds = after.at - before.at
        report["idle"] = {
            "seconds": round(seconds, 2),
            "percent_of_a_core": round(100 * sum(idle.values()) / seconds, 2),
            "percent_of_a_core_by_group": {g: round(100 * s / seconds, 2) for g, s in idle.items()},
        }
        rows: list[dict[str, Any]] = []
        for operation in options.operations:
            state = SystemState.read(running.layout.state_file) or running.state
            processes.refresh(state)
            concurrency = options.order_concurrency if operation == "order" else options.concurrency
            samples: list[CpuSample] = []

            def measure_now(taken: list[CpuSample] = samples) -> None:
                taken.append(processes.sample())

            with console.status(
                f"{OPERATIONS[operation]}, {concurrency} in flight: {options.warmup_s:g} s "
                f"warm-up, {options.seconds:g} s measured"
            ):
                phase = await run_phase(
                    gateway=gateway, tls=tls, shop=shop, operation=operation,
                    concurrency=concurrency, warmup_s=options.warmup_s, seconds=options.seconds,
                    on_measure=measure_now,
                )  # fmt: skip
                end = processes.sample()
            row = operation_row(phase, processes.spent(samples[0], end))
            row["load_average"] = load_average()
            rows.append(row)
            console.print(
                f"{operation}: {row['ops_per_s']:g}/s, p99 {row['p99_ms']} ms, "
                f"{row['cpu_ms_per_op']} ms CPU/op, {row['errors']} errors",
                highlight=False,
            )
        report["operations"] = rows
    report["timings_s"] = {
        "start_system": round(started - began, 1),
        "total": round(time.monotonic() - began, 1),
    }
    return report
