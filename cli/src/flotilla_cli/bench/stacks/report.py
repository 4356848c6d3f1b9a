"""What `flotilla bench stacks` reports: the ratios of each row (to the direct upstream's
throughput, to nginx's CPU per request), the summary, the JSON document and the table.
Pure: the numbers come in, nothing is measured here."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from flotilla_cli.bench.figures import cell as _cell
from flotilla_cli.bench.figures import ratio as _ratio_of
from flotilla_cli.bench.minimal_app import BENCH_PATH
from flotilla_cli.bench.stacks.rows import CANDIDATES, ROWS

__all__ = ["COLUMNS", "build_report", "render", "summarise", "table", "with_ratios"]

COLUMNS = (
    "stack", "server", "client", "req/s", "p50 ms", "p99 ms", "errors",
    "proxy CPU µs/req", "ratio to direct", "CPU vs nginx",
)  # fmt: skip

_CANDIDATE_KEYS = {candidate.key for candidate in CANDIDATES}


def _number(row: dict[str, Any] | None, key: str) -> float | None:
    value = None if row is None else row.get(key)
    return None if value is None else float(value)


def with_ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each row with `ratio_direct` (its req/s over the direct upstream's) and
    `cpu_vs_nginx` (its proxy CPU per request over nginx's); None where either side is
    missing. A failed row (`error`) is passed on as it is."""
    direct_rps = _number(results.get("direct"), "rps")
    nginx_cpu = _number(results.get("nginx"), "cpu_us_per_req")
    rows: dict[str, dict[str, Any]] = {}
    for key, result in results.items():
        if "error" in result:
            rows[key] = dict(result)
            continue
        rows[key] = {
            **result,
            "ratio_direct": _ratio_of(_number(result, "rps"), direct_rps, digits=3),
            "cpu_vs_nginx": _ratio_of(_number(result, "cpu_us_per_req"), nginx_cpu, digits=3),
        }
    return rows


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Who costs least CPU per request: every proxy measured, cheapest first; the cheapest
    candidate and how many times its CPU the next candidate needs; the gateway's CPU over
    the bare floor's (what its features cost)."""
    cpu = {
        key: value
        for key, result in results.items()
        if (value := _number(result, "cpu_us_per_req")) is not None
    }
    ranking = sorted(cpu, key=lambda key: cpu[key])
    candidates = [key for key in ranking if key in _CANDIDATE_KEYS]
    cheapest = candidates[0] if candidates else None
    runner_up = candidates[1] if len(candidates) > 1 else None
    return {
        "cpu_us_per_req": {key: cpu[key] for key in ranking},
        "cpu_ranking": ranking,
        "cheapest_candidate": cheapest,
        "next_candidate": runner_up,
        "next_vs_cheapest_cpu": _ratio_of(
            cpu.get(runner_up or ""), cpu.get(cheapest or ""), digits=3
        ),
        "gateway_vs_bare_cpu": _ratio_of(cpu.get("gateway"), cpu.get("bare_httptools"), digits=3),
    }


def build_report(
    *,
    options: dict[str, Any],
    load_generator: str,
    machine: dict[str, Any],
    results: dict[str, dict[str, Any]],
    notes: list[str],
) -> dict[str, Any]:
    """The JSON document (the table is drawn from it too)."""
    rows = with_ratios(results)
    for key, row in rows.items():
        described = ROWS[key]
        rows[key] = {"stack": described.stack, "server": described.server,
                     "client": described.client, **row}  # fmt: skip
    return {
        "benchmark": "proxy stacks",
        "options": options,
        "load_generator": load_generator,
        "path": BENCH_PATH,
        "machine": machine,
        "rows": rows,
        "summary": summarise(results),
        "notes": notes,
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(report: dict[str, Any]) -> Table:
    options = report["options"]
    result = Table(
        title=f"Proxy stacks: GET {report['path']} over loopback, {report['load_generator']} "
        f"({options['threads']} threads, {options['connections']} connections, "
        f"{options['duration_s']:g} s each), one process per proxy",
        title_justify="left",
    )
    for column in COLUMNS:
        result.add_column(column, justify="left" if column in COLUMNS[:3] else "right")
    for key in ROWS:
        row = report["rows"].get(key)
        if row is None:
            continue
        if "error" in row:
            result.add_row(row["stack"], row["server"], row["client"], "[red]failed[/]",
                           *["-"] * (len(COLUMNS) - 4))  # fmt: skip
            continue
        errors = str(row["errors"]) if not row["errors"] else f"[red]{row['errors']}[/]"
        result.add_row(
            row["stack"], row["server"], row["client"], f"{row['rps']:,.0f}",
            _cell(row["p50_ms"]), _cell(row["p99_ms"]), errors, _cell(row["cpu_us_per_req"]),
            _ratio(row["ratio_direct"]), _ratio(row["cpu_vs_nginx"]),
        )  # fmt: skip
    return result


def render(report: dict[str, Any], console: Console) -> None:
    console.print(table(report))
    summary = report["summary"]
    cpu = summary["cpu_us_per_req"]
    cheapest, runner_up = summary["cheapest_candidate"], summary["next_candidate"]
    if cheapest is not None:
        line = f"least CPU per request of the candidates: {ROWS[cheapest].stack} "
        line += f"({cpu[cheapest]:g} µs)"
        if runner_up is not None:
            line += f"; the next, {ROWS[runner_up].stack}, needs "
            line += f"{summary['next_vs_cheapest_cpu']:.1f}x that ({cpu[runner_up]:g} µs)"
        console.print(line, highlight=False)
    if summary["gateway_vs_bare_cpu"] is not None:
        console.print(
            f"the gateway with its features costs {summary['gateway_vs_bare_cpu']:.1f}x "
            "the bare floor's CPU per request",
            highlight=False,
        )
    for note in report["notes"]:
        console.print(f"[yellow]{note}[/]", highlight=False)
    console.print(f"machine: {report['machine']}", highlight=False)
