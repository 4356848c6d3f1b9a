"""The cost table: per operation, throughput, latency and the system's CPU per operation,
in total and per service, next to the targets (printed, never asserted)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from flotilla_cli.bench.cost.load import OPERATIONS, Phase
from flotilla_cli.bench.figures import cell, quantile_ms

__all__ = ["TARGETS", "operation_row", "render"]

# Operation -> (server CPU ms/op at most, ops/s at least, p99 ms at most), on SQLite;
# PostgreSQL is aimed at within 1.5x of the CPU.
TARGETS: dict[str, tuple[float, float, float]] = {
    "read": (1.5, 800.0, 50.0),
    "local": (6.0, 250.0, 150.0),
    "cross": (12.0, 120.0, 250.0),
    "order": (30.0, 50.0, 1000.0),
}


def operation_row(phase: Phase, cpu_by_group: dict[str, float]) -> dict[str, Any]:
    done = len(phase.latencies_s)
    ordered = sorted(phase.latencies_s)

    def per_op_ms(seconds: float) -> float | None:
        return round(seconds * 1000 / done, 3) if done else None

    total = sum(cpu_by_group.values())
    cpu_target, rate_target, p99_target = TARGETS[phase.operation]
    row: dict[str, Any] = {
        "operation": phase.operation,
        "concurrency": phase.concurrency,
        "done": done,
        "seconds": round(phase.seconds, 2),
        "ops_per_s": round(done / phase.seconds, 1) if phase.seconds else 0.0,
        "p50_ms": quantile_ms(ordered, 0.50, digits=1),
        "p99_ms": quantile_ms(ordered, 0.99, digits=1),
        "errors": sum(phase.errors.values()),
        "error_kinds": dict(sorted(phase.errors.items())),
        "error_sample": phase.error_sample,
        "polls": phase.polls,
        "cpu_ms_per_op": per_op_ms(total),
        "cpu_ms_per_op_by_group": {g: per_op_ms(s) for g, s in cpu_by_group.items()},
        "busy_cores": round(total / phase.seconds, 2) if phase.seconds else None,
        "targets": {"cpu_ms_per_op": cpu_target, "ops_per_s": rate_target, "p99_ms": p99_target},
    }
    row["met"] = {
        "cpu_ms_per_op": row["cpu_ms_per_op"] is not None and row["cpu_ms_per_op"] <= cpu_target,
        "ops_per_s": row["ops_per_s"] >= rate_target,
        "p99_ms": row["p99_ms"] is not None and row["p99_ms"] <= p99_target,
    }
    return row


def _mark(value: Any, met: bool) -> str:
    return f"[green]{cell(value)}[/]" if met else f"[red]{cell(value)}[/]"


def render(report: dict[str, Any], console: Console) -> None:
    options = report["options"]
    machine = report["machine"]
    idle = report["idle"]
    console.print(
        f"[bold]Cost per operation[/] ({options['database']}, {options['shards']} shards, "
        f"{options['instances']} instances each, {options['seconds']:g} s measured after "
        f"{options['warmup_s']:g} s warm-up; machine: {machine['cpus']} x {machine['cpu']}, "
        f"Python {machine['python']}; load average before {report['load_average_before']})",
        highlight=False,
    )
    table = Table(title_justify="left", show_lines=False)
    for column in ("operation", "conc.", "ops/s", "p50 ms", "p99 ms", "errors", "CPU ms/op"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    groups: list[str] = []
    for row in report["operations"]:
        for group in row["cpu_ms_per_op_by_group"]:
            if group not in groups:
                groups.append(group)
        met = row["met"]
        table.add_row(
            OPERATIONS[row["operation"]],
            str(row["concurrency"]),
            _mark(row["ops_per_s"], met["ops_per_s"]),
            cell(row["p50_ms"]),
            _mark(row["p99_ms"], met["p99_ms"]),
            f"[red]{row['errors']}[/]" if row["errors"] else "0",
            _mark(row["cpu_ms_per_op"], met["cpu_ms_per_op"]),
        )
    console.print(table)
    targets = ", ".join(
        f"{name} <= {cpu:g} ms, >= {rate:g}/s, p99 <= {p99:g} ms"
        for name, (cpu, rate, p99) in TARGETS.items()
    )
    console.print(f"targets (green: met): {targets}", highlight=False)

    shares = Table(title="CPU ms per operation, by process group", title_justify="left")
    shares.add_column("group")
    for row in report["operations"]:
        shares.add_column(row["operation"], justify="right")
    shares.add_column("idle % of a core", justify="right")
    for group in sorted(groups, key=lambda g: -max(
        (r["cpu_ms_per_op_by_group"].get(g) or 0.0) for r in report["operations"]
    )):  # fmt: skip
        shares.add_row(
            group,
            *(cell(r["cpu_ms_per_op_by_group"].get(group)) for r in report["operations"]),
            cell(idle["percent_of_a_core_by_group"].get(group)),
        )
    shares.add_row(
        "total",
        *(cell(r["cpu_ms_per_op"]) for r in report["operations"]),
        cell(idle["percent_of_a_core"]),
        style="bold",
    )
    console.print(shares)
    console.print(
        f"idle: {idle['percent_of_a_core']:g} % of a core over {idle['seconds']:g} s before "
        f"the load (target <= 5 %); load averages per phase: "
        f"{ {r['operation']: r['load_average'] for r in report['operations']} }",
        highlight=False,
    )
    for row in report["operations"]:
        if row["error_sample"]:
            console.print(f"{row['operation']}: {row['error_kinds']}, e.g. {row['error_sample']}",
                          style="yellow", highlight=False, markup=False)  # fmt: skip
