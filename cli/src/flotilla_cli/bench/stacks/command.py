"""The `flotilla bench stacks` command (registered in `flotilla_cli.bench.commands`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flotilla_cli.bench.harness import LoadOptions
from flotilla_cli.bench.stacks.report import render
from flotilla_cli.bench.stacks.runner import run_stacks_bench

__all__ = ["bench_stacks_command"]

# The table is wider than 80 columns: when printing to a file or a pipe, where Rich
# cannot ask the terminal, give it room instead of abbreviating every cell.
console = Console(width=None if sys.stdout.isatty() else 180)


def bench_stacks_command(
    duration: Annotated[float, typer.Option(min=1, help="Seconds measured per stack.")] = 10.0,
    connections: Annotated[
        int, typer.Option(min=1, max=10_000, help="Open keep-alive connections (wrk -c).")
    ] = 50,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the results here.")
    ] = None,
) -> None:
    """One proxy job on each candidate server and client stack.

    The same minimal proxy job on each candidate server/client stack (Starlette + httpx,
    Starlette + aiohttp, aiohttp + aiohttp, granian + aiohttp, bare httptools), next to the
    direct upstream, nginx and the Flotilla gateway, one process each, with wrk over
    loopback: req/s, p50/p99, errors, proxy CPU per request, ratio to direct, CPU vs nginx.
    Exits 1 if a stack failed to start or answer (its row says so); never on speed."""
    options = LoadOptions(duration_s=duration, connections=connections)
    report = run_stacks_bench(options, console)
    render(report, console)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(report, indent=2) + "\n")
    if any("error" in row for row in report["rows"].values()):
        raise typer.Exit(1)
