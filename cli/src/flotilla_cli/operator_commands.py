"""`flotilla audit ...` and `flotilla auth ...`: operator commands on the services' data."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flotilla_cli.layout import VarLayout
from flotilla_cli.service_commands import NoPlan, run_service_command

__all__ = ["audit_app", "auth_app"]

# Services that keep an audit log of their own.
AUDITED = ("auth", "accounts")

console = Console()
err = Console(stderr=True)
audit_app = typer.Typer(
    help="Check and read the services' hash-chained audit logs.", no_args_is_help=True
)
auth_app = typer.Typer(help="Operate the identity service.", no_args_is_help=True)

VarDir = Annotated[
    Path,
    typer.Option("--var-dir", envvar="FLOTILLA_VAR_DIR", help="Where run-time state lives."),
]


def _run(layout: VarLayout, service: str, *args: str) -> str:
    try:
        result = run_service_command(layout, service, *args)
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
    """Check every service's audit chain; name the first broken record. Exit 1 if any is."""
    layout = VarLayout.at(var_dir)
    reports = [json.loads(_run(layout, service, "audit-verify")) for service in AUDITED]
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
    for name in [service] if service else AUDITED:
        for line in _run(layout, name, "audit-tail", "--limit", str(limit)).splitlines():
            records.append({"service": name, **json.loads(line)})
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
    """Stage a new signing key: published in the JWKS at once, signing after the publish
    delay; the old key stays published until every token it signed has expired."""
    layout = VarLayout.at(var_dir)
    output = _run(layout, "auth", "rotate-keys", *(["--now"] if now else []))
    console.print_json(output)
