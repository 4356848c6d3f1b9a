"""`flotilla scale SERVICE N`: change the number of instances of a running system's service;
and the settings `flotilla up --autoscale` hands the supervisor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.processes import supervisor_alive
from flotilla_cli.launcher.state import AutoscaleSettings, SystemState
from flotilla_cli.ops.views import counts_table
from flotilla_cli.options import VarDir
from flotilla_cli.scaling import requests
from flotilla_cli.scaling.requests import ScaleError, ScaleRequest
from flotilla_kit import scale_requests

__all__ = ["app", "autoscale_settings", "scale_command"]

console = Console()
err = Console(stderr=True)

# Exit codes: 0 done; 1 the supervisor could not do it (or went away); 2 bad input.
_BAD_INPUT = 2

# Merged into `flotilla` (main.py): `flotilla scale`.
app = typer.Typer()


@app.command("scale")
def scale_command(
    service: Annotated[
        str,
        typer.Argument(help="auth, accounts, payments, inventory or orders.", show_default=False),
    ],
    instances: Annotated[
        int,
        typer.Argument(
            help=f"Instances wanted (1 to {requests.MAX_INSTANCES}; for accounts, per shard).",
            show_default=False,
        ),
    ],
    shard: Annotated[
        int | None, typer.Option(help="For accounts: only this ledger shard (default: all).")
    ] = None,
    var_dir: VarDir = Path("var"),
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the change to be done.")
    ] = 120.0,
) -> None:
    """Add or remove a running service's instances; no request fails.

    Add or remove instances of a running service. New instances start, become ready and
    then join the gateways' topology; removed ones leave it, drain and stop, so no request
    fails."""
    layout = VarLayout.at(var_dir)
    state = SystemState.read(layout.state_file)
    if state is None or not supervisor_alive(state) or state.phase != "running":
        err.print("Flotilla is not running here (`flotilla up --detach` first).")
        raise typer.Exit(_BAD_INPUT)
    request = ScaleRequest(service=service, shard=shard, instances=instances)
    try:
        requests.validate_request(request, shards=state.shards)
    except ScaleError as exc:
        err.print(f"[red]Cannot scale:[/] {exc}")
        raise typer.Exit(_BAD_INPUT) from None
    folder = requests.requests_dir(layout)
    scale_requests.submit(folder, request)
    deadline = time.monotonic() + timeout
    with console.status(f"scaling {service} to {instances}"):
        while (result := scale_requests.take_result(folder, request.id)) is None:
            if time.monotonic() > deadline or not supervisor_alive(state):
                scale_requests.withdraw(folder, request.id)
                err.print("[red]No answer from the supervisor[/] (`flotilla status`).")
                raise typer.Exit(1)
            time.sleep(0.2)  # the supervisor answers through a file
    if not result.ok:
        err.print(f"[red]Scaling failed:[/] {result.detail}")
        raise typer.Exit(1)
    console.print(f"[green]Scaled[/] {result.detail}")
    latest = SystemState.read(layout.state_file)
    if latest is not None:
        console.print(counts_table(latest))


def autoscale_settings(
    enabled: bool, min_instances: int, max_instances: int, target: float, window_s: float
) -> AutoscaleSettings | None:
    """`flotilla up --autoscale --min --max --target-in-flight --scale-down-window`."""
    if not enabled:
        return None
    if min_instances > max_instances:
        err.print("--min must not be above --max.")
        raise typer.Exit(_BAD_INPUT)
    return AutoscaleSettings(
        min_instances=min_instances,
        max_instances=max_instances,
        target_in_flight=target,
        scale_down_window_s=window_s,
    )
