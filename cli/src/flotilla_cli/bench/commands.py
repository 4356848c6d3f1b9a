"""`flotilla bench ...`: the benchmarks, each in its own module, registered in `bench_app`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flotilla_cli.bench import cost, gateway, inventory, startup
from flotilla_cli.bench.harness import LoadOptions
from flotilla_cli.bench.stacks.command import bench_stacks_command
from flotilla_cli.launcher.planning import Database
from flotilla_cli.options import DatabaseOption

__all__ = ["bench_app"]

console = Console()
err = Console(stderr=True)
bench_app = typer.Typer(
    help="Benchmarks against a fresh system.", no_args_is_help=True, rich_markup_mode="markdown"
)


def _show_bench(
    report: dict[str, Any],
    render: Callable[[dict[str, Any], Console], None],
    json_file: Path | None,
    *,
    width: int = 100,
) -> None:
    """A bench's table (kept whole, `width` wide, in a log or a CI output too) and, when
    asked, its JSON."""
    render(report, console if console.is_terminal else Console(width=width))
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(report, indent=2) + "\n")


@bench_app.command("cost")
def bench_cost_command(
    db: DatabaseOption = Database.sqlite,
    seconds: Annotated[float, typer.Option(min=1, help="Seconds measured per operation.")] = 15.0,
    warmup: Annotated[float, typer.Option(min=0, help="Seconds not counted per operation.")] = 3.0,
    idle: Annotated[float, typer.Option(min=1, help="Seconds of idle CPU measured first.")] = 10.0,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Only these operations: read, local, cross, order (repeatable)."),
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the results here.")
    ] = None,
) -> None:
    """CPU per operation (a read, transfers, an order) and at rest.

    A fresh system; its idle CPU; then an account read, a local transfer, a cross-shard
    (2PC) transfer and an order, each at a fixed concurrency through the gateway:
    ops/s, p50/p99, and the server CPU per operation in total and per process group."""
    unknown = sorted(set(only or ()) - set(cost.TARGETS))
    if unknown:
        err.print(f"unknown operation(s) {unknown}: choose from {sorted(cost.TARGETS)}")
        raise typer.Exit(2)
    options = cost.BenchOptions(
        database=db.value, seconds=seconds, warmup_s=warmup, idle_s=idle,
        operations=tuple(o for o in cost.TARGETS if not only or o in only),
    )  # fmt: skip
    report = asyncio.run(cost.run_cost_bench(options, console))
    _show_bench(report, cost.render, json_file, width=120)


@bench_app.command("startup")
def bench_startup_command(
    db: DatabaseOption = Database.sqlite,
    instances: Annotated[int, typer.Option(min=1, max=8, help="Instances a service.")] = 2,
    single: Annotated[
        bool, typer.Option(help="Also measure --instances 1 (fresh and warm).")
    ] = True,
    idle: Annotated[float, typer.Option(min=1, help="Seconds of idle CPU measured.")] = 30.0,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the results here.")
    ] = None,
) -> None:
    """Seconds to all ready, memory and idle CPU of `flotilla up`.

    `flotilla up` on a fresh var/ and again on the warm one: seconds to all ready, then
    every process's USS, RSS and idle CPU, and the outbox's commit -> broker latency on an
    idle system; the same with --instances 1."""
    options = startup.BenchOptions(
        database=db.value, instances=instances, single=single, idle_s=idle
    )
    report = asyncio.run(startup.run_startup_bench(options, console))
    _show_bench(report, startup.render, json_file)


@bench_app.command("gateway")
def bench_gateway_command(
    duration: Annotated[float, typer.Option(min=1, help="Seconds measured per case.")] = 10.0,
    connections: Annotated[
        int, typer.Option(min=1, max=10_000, help="Open keep-alive connections (wrk -c).")
    ] = 50,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the results here.")
    ] = None,
) -> None:
    """The gateway's cost per request, against direct calls and nginx.

    The gateway's cost per request with wrk over loopback: a FastAPI app and a minimal
    ASGI app, each direct and through the gateway, nginx as the reference, plus TLS rows
    and rows at one connection: req/s, p50/p99, CPU per request of proxy, app and wrk,
    ratio_fastapi, ratio_minimal, added_p50_ms (loaded and unloaded) and cpu_vs_nginx."""
    options = LoadOptions(duration_s=duration, connections=connections)
    report = gateway.run_gateway_bench(options, console)
    _show_bench(report, gateway.render, json_file)


@bench_app.command("inventory")
def bench_inventory_command(
    duration: Annotated[float, typer.Option(min=1, help="Seconds measured per mode.")] = 10.0,
    warmup: Annotated[float, typer.Option(min=0, help="Seconds not counted per mode.")] = 2.0,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Reservations in flight.")] = 16,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the results here.")
    ] = None,
) -> None:
    """One reservation over REST, gRPC unary and a gRPC stream.

    No system needed: one inventory process (SQLite, mutual TLS, tokens checked) and the
    same work (reserve one unit, release it) over REST, gRPC unary and gRPC ReserveStream:
    reservations/s, p50/p99, CPU per reservation of the service and the load,
    ratio_grpc_rest (stream vs REST; target >= 2, printed) and ratio_unary_rest."""
    options = inventory.BenchOptions(duration_s=duration, warmup_s=warmup, concurrency=concurrency)
    report = inventory.run_inventory_bench(options, console)
    _show_bench(report, inventory.render, json_file)


bench_app.command("stacks")(bench_stacks_command)
