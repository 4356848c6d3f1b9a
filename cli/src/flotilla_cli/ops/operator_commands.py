"""`flotilla audit ...`, `flotilla auth ...` and `flotilla transfers ...`: operator commands
on the services' data, each run as the service's own command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.planning import MANIFEST, SHARDED_SERVICE
from flotilla_cli.launcher.service_commands import NoPlan, read_plan, run_service_command
from flotilla_cli.options import VarDir

__all__ = ["audit_app", "auth_app", "transfers_app"]

# Services that keep an audit log of their own (each ledger shard has its own).
AUDITED = tuple(service.name for service in MANIFEST.services if service.audit)


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
