"""`flotilla audit ...` and `flotilla auth ...`: operator commands on the services' data."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flotilla_cli import bench_cost, bench_gateway, bench_inventory, bench_startup
from flotilla_cli.chaos.bank import ChaosOptions, run_bank_chaos
from flotilla_cli.chaos.report import finish_chaos_run
from flotilla_cli.chaos.shop_command import chaos_shop
from flotilla_cli.layout import VarLayout
from flotilla_cli.planning import SHARDED_SERVICE, Database
from flotilla_cli.service_commands import NoPlan, read_plan, run_service_command

__all__ = ["audit_app", "auth_app", "bench_app", "chaos_app", "transfers_app"]

# Services that keep an audit log of their own (each ledger shard has its own).
AUDITED = ("auth", "accounts", "payments", "inventory")


def _audited(layout: VarLayout, only: str | None = None) -> list[tuple[str, str, int | None]]:
    """(label, service, shard) of every audit log in the system."""
    try:
        shards = read_plan(layout).shards
    except NoPlan as exc:
        err.print(str(exc))
        raise typer.Exit(2) from exc
    targets: list[tuple[str, str, int | None]] = []
    for service in AUDITED:
        if only and service != only:
            continue
        if service == SHARDED_SERVICE:
            targets += [(f"{service}-s{n}", service, n) for n in range(shards)]
        else:
            targets.append((service, service, None))
    return targets


console = Console()
err = Console(stderr=True)
audit_app = typer.Typer(
    help="Check and read the services' hash-chained audit logs.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
auth_app = typer.Typer(
    help="Operate the identity service.", no_args_is_help=True, rich_markup_mode="markdown"
)
transfers_app = typer.Typer(
    help="Inspect transfers (payments).", no_args_is_help=True, rich_markup_mode="markdown"
)
chaos_app = typer.Typer(
    help="Fault injection against a fresh system.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
chaos_app.command("shop")(chaos_shop)
bench_app = typer.Typer(
    help="Benchmarks against a fresh system.", no_args_is_help=True, rich_markup_mode="markdown"
)

VarDir = Annotated[
    Path,
    typer.Option("--var-dir", envvar="FLOTILLA_VAR_DIR", help="Where run-time state lives."),
]


def _run(layout: VarLayout, service: str, *args: str, shard: int | None = None) -> str:
    try:
        result = run_service_command(layout, service, *args, shard=shard)
    except NoPlan as exc:
        err.print(str(exc))
        raise typer.Exit(2) from exc
    if result.returncode not in (0, 1):  # 1: the command ran and found a problem
        err.print(f"{service} {' '.join(args)} failed:\n{result.stderr[-2000:]}", markup=False)
        raise typer.Exit(2)
    return result.stdout


@audit_app.command("verify")
def audit_verify(
    var_dir: VarDir = Path("var"),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check every service's audit chain; exit 1 if one is broken.

    Names the first broken record of each."""
    layout = VarLayout.at(var_dir)
    reports = [
        {**json.loads(_run(layout, service, "audit-verify", shard=shard)), "service": label}
        for label, service, shard in _audited(layout)
    ]
    if as_json:
        sys.stdout.write(json.dumps({"services": reports}) + "\n")
    else:
        table = Table(title="Audit chains")
        for column in ("service", "records", "intact", "first broken", "head"):
            table.add_column(column)
        for r in reports:
            table.add_row(
                r["service"],
                str(r["records"]),
                "[green]yes[/]" if r["intact"] else "[red]NO[/]",
                "-" if r["first_broken_seq"] is None else f"{r['first_broken_seq']}: {r['reason']}",
                (r["head"] or "-")[:16],
            )
        console.print(table)
    if not all(r["intact"] for r in reports):
        raise typer.Exit(1)


@audit_app.command("tail")
def audit_tail(
    var_dir: VarDir = Path("var"),
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Records per service.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """The newest audit records of every service, merged by time."""
    layout = VarLayout.at(var_dir)
    records: list[dict[str, Any]] = []
    for label, name, shard in _audited(layout, service):
        for line in _run(
            layout, name, "audit-tail", "--limit", str(limit), shard=shard
        ).splitlines():
            records.append({**json.loads(line), "service": label})
    records.sort(key=lambda r: r["at"])
    for record in records:
        if as_json:
            sys.stdout.write(json.dumps(record) + "\n")
            continue
        outcome = "green" if record["outcome"] == "success" else "red"
        console.print(
            f"[dim]{record['at'][:23]}[/] [bold]{record['service']:<8}[/] #{record['seq']:<5} "
            f"[{outcome}]{record['action']}[/] by {record['actor']} on {record['target'] or '-'} "
            f"[dim]{json.dumps(record['details'])}[/]",
            highlight=False,
        )


@auth_app.command("rotate-keys")
def rotate_keys(
    var_dir: VarDir = Path("var"),
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help="Activate the new key at once (emergency: verifiers that have not fetched "
            "it yet refuse its tokens until they do).",
        ),
    ] = False,
) -> None:
    """Stage a new token-signing key; the old one is retired later.

    Stage a new signing key: published in the JWKS at once, signing after the publish
    delay; the old key stays published until every token it signed has expired."""
    layout = VarLayout.at(var_dir)
    output = _run(layout, "auth", "rotate-keys", *(["--now"] if now else []))
    console.print_json(output)


@transfers_app.command("in-doubt")
def in_doubt(
    var_dir: VarDir = Path("var"),
    older_than: Annotated[float, typer.Option(help="Only those unfinished this long (s).")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Transfers not finished yet; exit 1 if there is one.

    Those PREPARING, COMMITTING or ABORTING."""
    layout = VarLayout.at(var_dir)
    output = _run(layout, "payments", "in-doubt", "--older-than", str(older_than))
    transfers = [json.loads(line) for line in output.splitlines() if line.strip()]
    if as_json:
        for transfer in transfers:
            sys.stdout.write(json.dumps(transfer) + "\n")
    else:
        table = Table(title=f"Transfers in doubt: {len(transfers)}")
        for column in ("id", "state", "path", "from", "to", "amount", "age (s)"):
            table.add_column(column)
        for t in transfers:
            table.add_row(
                t["id"], t["state"], t["path"], t["from_account"], t["to_account"],
                f"{t['amount_minor']} {t['currency']}", str(t.get("age_s", "")),
            )  # fmt: skip
        console.print(table)
    if transfers:
        raise typer.Exit(1)


@chaos_app.command("bank")
def chaos_bank(
    transfers: Annotated[int, typer.Option(min=1, help="Transfers to send.")] = 2000,
    kills: Annotated[int, typer.Option(min=0, help="Processes to SIGKILL meanwhile.")] = 10,
    seed: Annotated[int, typer.Option(help="Makes the run's choices repeatable.")] = 1,
    fault_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.1,
            help="Chance, per transfer and crash point, that a coordinator exits at once "
            "(os._exit, as kill -9). 0 injects none.",
        ),
    ] = 0.002,
    db: Annotated[Database, typer.Option(help="Database backend.")] = Database.sqlite,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    var_dir: Annotated[
        Path | None,
        typer.Option(help="Run the system here (kept afterwards). Default: a temporary one."),
    ] = None,
    keep: Annotated[bool, typer.Option(help="Keep the temporary var/ for a post-mortem.")] = False,
) -> None:
    """Transfers under killed processes, then the bank's invariants.

    Start a fresh system (2 shards, 2 instances each, 2 coordinators), send concurrent
    transfers through the gateway while killing processes and crashing coordinators at
    their fault points, then check every invariant. Exit 1 if one does not hold."""
    options = ChaosOptions(
        transfers=transfers, kills=kills, seed=seed, fault_rate=fault_rate, database=db.value,
        var_dir=var_dir, keep=keep,
    )  # fmt: skip
    report = asyncio.run(run_bank_chaos(options, console))
    finish_chaos_run(console, report, title="Bank invariants after the storm", json_file=json_file)


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
    db: Annotated[Database, typer.Option(help="Database backend.")] = Database.sqlite,
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
    unknown = sorted(set(only or ()) - set(bench_cost.TARGETS))
    if unknown:
        err.print(f"unknown operation(s) {unknown}: choose from {sorted(bench_cost.TARGETS)}")
        raise typer.Exit(2)
    options = bench_cost.BenchOptions(
        database=db.value, seconds=seconds, warmup_s=warmup, idle_s=idle,
        operations=tuple(o for o in bench_cost.TARGETS if not only or o in only),
    )  # fmt: skip
    report = asyncio.run(bench_cost.run_cost_bench(options, console))
    _show_bench(report, bench_cost.render, json_file, width=120)


@bench_app.command("startup")
def bench_startup_command(
    db: Annotated[Database, typer.Option(help="Database backend.")] = Database.sqlite,
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
    options = bench_startup.BenchOptions(
        database=db.value, instances=instances, single=single, idle_s=idle
    )
    report = asyncio.run(bench_startup.run_startup_bench(options, console))
    _show_bench(report, bench_startup.render, json_file)


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
    options = bench_gateway.BenchOptions(duration_s=duration, connections=connections)
    report = bench_gateway.run_gateway_bench(options, console)
    _show_bench(report, bench_gateway.render, json_file)


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
    options = bench_inventory.BenchOptions(
        duration_s=duration, warmup_s=warmup, concurrency=concurrency
    )
    report = bench_inventory.run_inventory_bench(options, console)
    _show_bench(report, bench_inventory.render, json_file)
