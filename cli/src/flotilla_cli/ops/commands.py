"""The commands that look at a running system: `flotilla status`, `logs`, `trace` and
`demo`, and the groups `audit`, `auth`, `transfers` and `events`; all in `app`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.processes import supervisor_alive
from flotilla_cli.launcher.state import SystemState
from flotilla_cli.ops import demo as demo_walkthrough
from flotilla_cli.ops import logs as log_merge
from flotilla_cli.ops.events import events_app
from flotilla_cli.ops.operator_commands import audit_app, auth_app, transfers_app
from flotilla_cli.ops.trace import trace_command
from flotilla_cli.ops.views import status_view
from flotilla_cli.options import VarDir

__all__ = ["app"]

# Merged into `flotilla` (main.py): its commands and groups are `flotilla`'s.
app = typer.Typer()
console = Console()
err = Console(stderr=True)


@app.command()
def status(
    var_dir: VarDir = Path("var"),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every instance: service, pid, port, ready, restarts, RSS."""
    layout = VarLayout.at(var_dir)
    state = SystemState.read(layout.state_file)
    alive = supervisor_alive(state)
    if state is None or not alive:
        if as_json:
            sys.stdout.write(json.dumps({"running": False}) + "\n")
        else:
            console.print("Flotilla is not running here (`flotilla up`).")
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write(json.dumps({"running": True, **state.model_dump(mode="json")}) + "\n")
        return
    console.print(status_view(state))


@app.command()
def demo(
    var_dir: VarDir = Path("var"),
    gateway: Annotated[
        str | None, typer.Option(help="Gateway URL (default: from the state).")
    ] = None,
) -> None:
    """Walk through the system via the gateway, checking every answer.

    Walk through the system via the gateway: log in, list accounts, open one, and see
    what the gateway and services refuse."""
    layout = VarLayout.at(var_dir)
    state = SystemState.read(layout.state_file)
    url = gateway or (state.gateway_url if state else None)
    if url is None or not layout.credentials_file.exists():
        err.print("Start the system first: `flotilla up --detach` (dev profile).")
        raise typer.Exit(1)
    ok = demo_walkthrough.run(url, layout, console)
    raise typer.Exit(0 if ok else 1)


@app.command()
def logs(
    var_dir: VarDir = Path("var"),
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    trace: Annotated[str | None, typer.Option(help="Only lines of this trace id.")] = None,
    request: Annotated[str | None, typer.Option(help="Only lines of this request id.")] = None,
    lines: Annotated[int, typer.Option(help="Show the last N merged lines (0: all).")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON lines.")] = False,
) -> None:
    """Every instance's JSON logs merged by time, optionally filtered."""
    layout = VarLayout.at(var_dir)
    merged = log_merge.merge(layout.logs, service=service, trace_id=trace, request_id=request)
    shown = merged[-lines:] if lines else merged
    for record in shown:
        if as_json:
            sys.stdout.write(record.raw + "\n")
        else:
            console.print(log_merge.render(record), highlight=False)
    if not shown:
        err.print("No matching log lines.")


app.command("trace")(trace_command)
app.add_typer(audit_app, name="audit")
app.add_typer(auth_app, name="auth")
app.add_typer(transfers_app, name="transfers")
app.add_typer(events_app, name="events")
