"""`flotilla bench startup`: what the system costs at rest.

For each size (the default 2 instances a service, then 1): `flotilla up --detach` on a
fresh var/ (certificates, databases, migrations and demo data are made), then again on
the same, warm var/. Each start: seconds from the command to all ready; then, after a few
seconds to settle, every process of the system (instances, relays, the gateway, the
supervisor and what it started: NATS, PostgreSQL, a forking parent) with its USS, RSS and
idle CPU over `--idle` seconds; and, on the first start, how long an outbox row takes from
its commit to the broker while the system is otherwise idle (transfers one at a time,
each from the moment it is sent to the moment its `transfer_committed` event arrives).

USS is the memory only that process holds (what it would give back if it stopped); PSS
adds its share of the pages it shares with others (the PSS of all processes sums to the
memory the system really uses); RSS counts shared pages in full, in each process.

A benchmark, not a test: it prints tables and writes JSON with the machine and its load
average, and asserts nothing; the targets are printed next to the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import psutil
from rich.console import Console
from rich.table import Table

from flotilla_cli.bench.system_processes import SystemProcesses, load_average
from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.machine import machine
from flotilla_cli.launcher.scratch_system import START_WITHIN_S, flotilla
from flotilla_cli.launcher.state import SystemState
from flotilla_kit.devservers import free_port
from flotilla_kit.tls import client_context

__all__ = ["TARGETS", "BenchOptions", "render", "run_startup_bench"]

TARGETS = {
    "warm_ready_s": 10.0,
    "fresh_ready_s": 15.0,
    "uss_instances_mib": 700.0,
    "idle_percent_of_a_core": 5.0,
    "outbox_p99_s": 1.0,
}
_MIB = 2**20


@dataclass(frozen=True)
class BenchOptions:
    database: str = "sqlite"
    instances: int = 2
    single: bool = True  # also measure --instances 1
    settle_s: float = 5.0  # after all ready, before measuring
    idle_s: float = 30.0
    transfers: int = 20  # for the outbox latency
    pause_s: float = 1.5  # between them: each finds the relays at rest


_KNOWN_COMMANDS = {
    "postgres": "postgres",
    "nats-server": "nats-server",
    "valkey": "valkey",
    "multiprocessing.forkserver": "forking parent",
    "multiprocessing.resource_tracker": "resource tracker",
}


def _process_name(process: psutil.Process, state: SystemState) -> str:
    names = {i.pid: i.name for i in state.instances if i.pid is not None}
    names[state.supervisor_pid] = "supervisor"
    if process.pid in names:
        return names[process.pid]
    try:
        text = " ".join(process.cmdline())
    except psutil.Error:
        return "gone"
    known = [name for marker, name in _KNOWN_COMMANDS.items() if marker in text]
    return known[0] if known else text[:40]


async def _at_rest(state: SystemState, idle_s: float) -> list[dict[str, Any]]:
    """Every process of the system: name, USS and RSS (MiB), idle CPU (% of a core)."""
    processes = SystemProcesses(state)
    before = processes.sample()
    await asyncio.sleep(idle_s)
    after = processes.sample()
    seconds = after.at - before.at
    rows: list[dict[str, Any]] = []
    for pid, start in before.seconds.items():
        end = after.seconds.get(pid)
        try:
            process = psutil.Process(pid)
            memory = process.memory_full_info()
        except psutil.Error:
            continue
        if end is None:
            continue
        rows.append(
            {
                "process": _process_name(process, state),
                "instance": any(i.pid == pid for i in state.instances),
                "pid": pid,
                "uss_mib": round(memory.uss / _MIB, 1),
                "pss_mib": round(memory.pss / _MIB, 1),
                "rss_mib": round(memory.rss / _MIB, 1),
                "idle_cpu_percent": round(100 * max(0.0, end - start) / seconds, 2),
            }
        )
    return sorted(rows, key=lambda r: str(r["process"]))


async def _outbox_latency(
    state: SystemState, layout: VarLayout, transfers: int, pause_s: float
) -> dict[str, Any]:
    """Transfers one at a time between alice's accounts; for each, the seconds from
    sending it to its event arriving on the broker."""
    assert state.nats_url is not None
    arrived: dict[str, float] = {}
    sent: dict[str, float] = {}
    all_arrived = asyncio.Event()

    async def on_event(message: Any) -> None:
        subject = json.loads(message.data).get("subject")
        if isinstance(subject, str):
            arrived.setdefault(subject, time.monotonic())
        if len(sent) == transfers and not set(sent) - set(arrived):
            all_arrived.set()

    broker = await nats.connect(state.nats_url, connect_timeout=5)
    credentials = json.loads(layout.credentials_file.read_text())
    password = next(u["password"] for u in credentials["users"] if u["username"] == "alice")
    tls: ssl.SSLContext = client_context(layout.tls / "ca.pem")
    try:
        await broker.subscribe("flotilla.payments.>", cb=on_event)
        await broker.flush()
        async with httpx.AsyncClient(base_url=state.gateway_url, verify=tls, timeout=10) as client:
            login = await client.post(
                "/api/v1/auth/token",
                data={"grant_type": "password", "username": "alice", "password": password},
            )
            login.raise_for_status()
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            accounts = (await client.get("/api/v1/accounts", headers=auth)).json()["items"]
            first, second = [a["id"] for a in accounts if a["currency"] == "EUR"][:2]
            for n in range(transfers):
                began = time.monotonic()
                response = await client.post(
                    "/api/v1/transfers",
                    json={
                        "from_account": first if n % 2 else second,
                        "to_account": second if n % 2 else first,
                        "amount_minor": 1,
                        "currency": "EUR",
                        "reference": "startup bench",
                    },
                    headers={**auth, "Idempotency-Key": f"startup-bench-{began}"},
                )
                response.raise_for_status()
                sent[response.json()["id"]] = began
                await asyncio.sleep(pause_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_arrived.wait(), 10)
    finally:
        await broker.close()
    latencies = sorted(arrived[t] - began for t, began in sent.items() if t in arrived)
    missing = len(sent) - len(latencies)
    if not latencies:
        return {"transfers": len(sent), "missing": missing}
    return {
        "transfers": len(sent),
        "missing": missing,
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3),
        "max_s": round(latencies[-1], 3),
    }


async def _one_start(
    var_dir: Path, options: BenchOptions, instances: int, kind: str, *, outbox: bool
) -> dict[str, Any]:
    layout = VarLayout.at(var_dir)
    port = free_port()
    began = time.monotonic()
    await asyncio.to_thread(
        flotilla, var_dir, "up", "--detach", "--profile", "dev", "--db", options.database,
        "--instances", str(instances), "--gateway-port", str(port),
        "--timeout", str(START_WITHIN_S),
    )  # fmt: skip
    ready_s = time.monotonic() - began
    try:
        state = SystemState.read(layout.state_file)
        if state is None:
            raise RuntimeError(f"flotilla up left no state in {layout.state_file}")
        await asyncio.sleep(options.settle_s)
        load = load_average()
        processes = await _at_rest(state, options.idle_s)
        run: dict[str, Any] = {
            "instances": instances,
            "kind": kind,
            "ready_s": round(ready_s, 2),
            "load_average": load,
            "processes": processes,
            "uss_total_mib": round(sum(p["uss_mib"] for p in processes), 1),
            "uss_instances_mib": round(sum(p["uss_mib"] for p in processes if p["instance"]), 1),
            "pss_total_mib": round(sum(p["pss_mib"] for p in processes), 1),
            "rss_total_mib": round(sum(p["rss_mib"] for p in processes), 1),
            "idle_percent_of_a_core": round(sum(p["idle_cpu_percent"] for p in processes), 2),
        }
        if outbox:
            run["outbox"] = await _outbox_latency(state, layout, options.transfers, options.pause_s)
        return run
    finally:
        await asyncio.to_thread(flotilla, var_dir, "down")


async def run_startup_bench(options: BenchOptions, console: Console) -> dict[str, Any]:
    report: dict[str, Any] = {
        "benchmark": "flotilla up: time to ready, memory and CPU at rest",
        "options": asdict(options),
        "machine": machine(),
        "targets": TARGETS,
        "runs": [],
    }
    sizes = [options.instances] + ([1] if options.single and options.instances != 1 else [])
    for instances in sizes:
        var_dir = Path(tempfile.mkdtemp(prefix="flotilla-bench-startup-"))
        # The embedded PostgreSQL, when used, runs as another user.
        os.chmod(var_dir, 0o755)  # noqa: S103
        try:
            for kind in ("fresh", "warm"):
                label = f"--instances {instances}, {kind} var/"
                with console.status(f"{label}: flotilla up, then {options.idle_s:g} s at rest"):
                    run = await _one_start(
                        var_dir, options, instances, kind,
                        outbox=kind == "fresh" and instances == options.instances,
                    )  # fmt: skip
                report["runs"].append(run)
                console.print(
                    f"{label}: ready in {run['ready_s']:.1f} s, USS {run['uss_total_mib']:.0f} "
                    f"MiB, idle {run['idle_percent_of_a_core']:.1f} % of a core",
                    highlight=False,
                )
        finally:
            shutil.rmtree(var_dir, ignore_errors=True)
    return report


def render(report: dict[str, Any], console: Console) -> None:
    runs: list[dict[str, Any]] = report["runs"]
    first = runs[0]
    table = Table(
        title=f"At rest: --instances {first['instances']}, fresh var/ "
        f"(load average {' '.join(map(str, first['load_average']))})"
    )
    for column in ("process", "USS MiB", "PSS MiB", "RSS MiB", "idle CPU %"):
        table.add_column(column, justify="left" if column == "process" else "right")
    for p in first["processes"]:
        table.add_row(
            p["process"],
            f"{p['uss_mib']:.1f}",
            f"{p['pss_mib']:.1f}",
            f"{p['rss_mib']:.1f}",
            f"{p['idle_cpu_percent']:.2f}",
        )
    table.add_row(
        "total",
        f"{first['uss_total_mib']:.0f}",
        f"{first['pss_total_mib']:.0f}",
        f"{first['rss_total_mib']:.0f}",
        f"{first['idle_percent_of_a_core']:.2f}",
        style="bold",
    )
    console.print(table)

    summary = Table(title="flotilla up: to all ready, and at rest")
    columns = ("instances", "var/", "ready s", "USS MiB", "of which instances", "PSS MiB")
    for column in (*columns, "idle % core", "load"):
        summary.add_column(column, justify="right")
    for run in runs:
        summary.add_row(
            str(run["instances"]),
            run["kind"],
            f"{run['ready_s']:.1f}",
            f"{run['uss_total_mib']:.0f}",
            f"{run['uss_instances_mib']:.0f}",
            f"{run['pss_total_mib']:.0f}",
            f"{run['idle_percent_of_a_core']:.2f}",
            " ".join(map(str, run["load_average"])),
        )
    console.print(summary)
    outbox = first.get("outbox", {})
    if "p99_s" in outbox:
        console.print(
            f"outbox commit -> broker, idle system, {outbox['transfers']} transfers one at a "
            f"time: p50 {outbox['p50_s']} s, p99 {outbox['p99_s']} s, max {outbox['max_s']} s"
            f", {outbox['missing']} missing",
            highlight=False,
        )
    targets = report["targets"]
    console.print(
        f"targets ({report['options']['instances']} instances): warm <= "
        f"{targets['warm_ready_s']:g} s, fresh <= {targets['fresh_ready_s']:g} s, USS of the "
        f"instances <= {targets['uss_instances_mib']:g} MiB, idle <= "
        f"{targets['idle_percent_of_a_core']:g} % of a core, outbox p99 <= "
        f"{targets['outbox_p99_s']:g} s",
        highlight=False,
    )
    console.print(f"machine: {report['machine']}", highlight=False)
