"""`flotilla chaos bank`: a fresh system, thousands of transfers, random SIGKILLs and
injected crashes inside the coordinator, then a reconciliation of every invariant.

It starts its own system (in a temporary var/ unless told otherwise), so it never
touches the one you are running.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from flotilla_cli.chaos.killer import kill_randomly
from flotilla_cli.chaos.load import run_transfers, set_up_bank
from flotilla_cli.chaos.reconcile import check_invariants, read_ledger, read_transfers
from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.machine import machine
from flotilla_cli.launcher.scratch_system import scratch_system
from flotilla_cli.launcher.service_commands import read_plan, run_service_command
from flotilla_cli.launcher.state import SystemState
from flotilla_kit.tls import client_context

__all__ = ["ChaosOptions", "reconcile_bank", "run_bank_chaos"]

# Crash points inside the payments coordinator (see services/payments/README.md), each firing with
# the run's fault rate (dev and test profiles only).
FAULT_POINTS = (
    "after_preparing_record",
    "after_prepare",
    "after_decision",
    "after_first_commit",
    "before_done",
)


@dataclass(frozen=True)
class ChaosOptions:
    transfers: int = 2000
    kills: int = 10
    customers: int = 8
    accounts_each: int = 2
    deposit_minor: int = 100_000
    concurrency: int = 16
    shards: int = 2
    instances: int = 2
    seed: int = 1
    fault_rate: float = 0.002  # per transfer and fault point; 0 injects none
    database: str = "sqlite"
    var_dir: Path | None = None  # None: a fresh temporary directory, removed afterwards
    keep: bool = False


async def _wait_until_settled(layout: VarLayout, timeout_s: float) -> float:
    """Until every instance is back and the coordinator has nothing in doubt."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        state = SystemState.read(layout.state_file)
        ready = state is not None and state.all_ready
        doubt = run_service_command(layout, "payments", "in-doubt", timeout_s=60)
        if ready and doubt.returncode == 0 and not doubt.stdout.strip():
            return time.monotonic() - started
        await asyncio.sleep(1.0)  # watching other processes settle: nothing to await
    raise TimeoutError(f"transfers still in doubt after {timeout_s}s")


async def reconcile_bank(layout: VarLayout, bank_accounts: list[str], deposited: int,
                         answered: Mapping[str, str]) -> dict[str, Any]:  # fmt: skip
    """Every ledger shard's and the coordinator's database, read and checked against the
    bank's invariants (`reconcile.check_invariants`), with the coordinator's counts."""
    plan = read_plan(layout)
    shard_urls = {
        i.shard: i.env["FLOTILLA_DATABASE_URL"]
        for i in plan.instances
        if i.service == "accounts" and i.shard is not None
    }
    payments_url = next(
        i.env["FLOTILLA_DATABASE_URL"] for i in plan.instances if i.service == "payments"
    )
    ledger = await read_ledger(shard_urls)
    coordinator = await read_transfers(payments_url)
    invariants = check_invariants(
        ledger=ledger,
        coordinator=coordinator.transfers,
        scenario_accounts=bank_accounts,
        deposited_minor=deposited,
        answered=answered,
    )
    return {
        "invariants": invariants,
        "retried_by_coordinator": coordinator.retried,
        "recoveries": coordinator.recoveries,
        "in_doubt_resolved_by_recovery": coordinator.recovered,
    }


def _faults_fired(layout: VarLayout) -> dict[str, int]:
    """Crash points that fired, from the coordinators' last log lines before each exit."""
    fired: Counter[str] = Counter()
    for log_file in sorted(layout.logs.glob("payments-*.log")):
        for line in log_file.read_text(errors="replace").splitlines():
            if '"fault_point"' not in line:
                continue
            try:
                fired[json.loads(line)["fault_point"]] += 1
            except (ValueError, KeyError):
                continue  # a line cut short by the exit itself
    return dict(sorted(fired.items()))


async def run_bank_chaos(options: ChaosOptions, console: Console) -> dict[str, Any]:
    faults = {f"payments:{p}": options.fault_rate for p in FAULT_POINTS if options.fault_rate > 0}
    started = time.monotonic()
    report: dict[str, Any] = {
        "options": {**options.__dict__, "var_dir": str(options.var_dir)},
        "machine": machine(),
    }
    with scratch_system(
        database=options.database, shards=options.shards, instances=options.instances,
        var_dir=options.var_dir, keep=options.keep, env={"FLOTILLA_FAULTS": json.dumps(faults)},
        console=console,
    ) as running:  # fmt: skip
        layout, state = running.layout, running.state
        report["options"]["var_dir"] = str(layout.root)
        tls = client_context(layout.tls / "ca.pem")
        async with httpx.AsyncClient(base_url=state.gateway_url, verify=tls, timeout=30) as client:
            with console.status("opening accounts"):
                bank = await set_up_bank(
                    client, running.password("ada"), customers=options.customers,
                    accounts_each=options.accounts_each, deposit_minor=options.deposit_minor,
                )  # fmt: skip
        stop = asyncio.Event()
        duration_guess = max(10.0, options.transfers / 40)
        killer = asyncio.create_task(
            kill_randomly(
                layout.state_file,
                kills=options.kills,
                every_s=duration_guess / max(1, options.kills),
                stop=stop,
                seed=options.seed,
            )
        )
        with console.status(f"{options.transfers} transfers, {options.kills} kills"):
            load_started = time.monotonic()
            results, stats = await run_transfers(
                state.gateway_url, tls, bank, transfers=options.transfers,
                concurrency=options.concurrency, seed=options.seed,
            )  # fmt: skip
            load_s = time.monotonic() - load_started
            stop.set()
            killed = await killer
        doubt = run_service_command(layout, "payments", "in-doubt", timeout_s=60).stdout
        in_doubt_after_load = sum(1 for line in doubt.splitlines() if line.strip())
        with console.status("waiting for recovery"):
            settle_s = await _wait_until_settled(layout, 120)
        answered = {r.transfer_id: r.outcome for r in results if r.transfer_id}
        outcomes = Counter(r.outcome for r in results)
        reconciled = await reconcile_bank(
            layout, [a for _, a in bank.accounts], bank.deposited_minor, answered
        )
        invariants = reconciled["invariants"]
        report.update(
            {
                "invariants_hold": all(v["holds"] for v in invariants.values()),
                "invariants": invariants,
                "counts": {
                    "transfers": len(results),
                    "committed": outcomes["committed"],
                    "rejected": outcomes["rejected"],
                    "aborted": outcomes["aborted"],
                    "unknown_to_client": outcomes["unknown"],
                    "retried_on_purpose": sum(r.retried_on_purpose for r in results),
                    "client_retries": sum(r.attempts - 1 for r in results),
                    "transport_errors": stats["transport_errors"],
                    "kills": dict(killed),
                    "kills_total": sum(killed.values()),
                    "restarts": sum(
                        i.restarts for i in (SystemState.read(layout.state_file) or state).instances
                    ),
                    "faults_fired": _faults_fired(layout),
                    "in_doubt_after_load": in_doubt_after_load,
                    "retried_by_coordinator": reconciled["retried_by_coordinator"],
                    "recoveries": reconciled["recoveries"],
                    "in_doubt_resolved_by_recovery": reconciled["in_doubt_resolved_by_recovery"],
                },
                "seconds": {
                    "load": round(load_s, 1),
                    "settle": round(settle_s, 1),
                    "total": round(time.monotonic() - started, 1),
                },
            }
        )
        return report
