"""`flotilla up` and `flotilla down`: start a whole system (a plan, then the supervisor
that runs it) and stop it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.planning import Database, build_plan
from flotilla_cli.launcher.processes import leftover_pids, stop_pids, supervisor_alive
from flotilla_cli.launcher.state import SystemState, write_atomically
from flotilla_cli.ops import prometheus
from flotilla_cli.ops.views import system_view
from flotilla_cli.options import DatabaseOption, VarDir
from flotilla_cli.scaling.command import autoscale_settings
from flotilla_kit.devservers import port_is_free

__all__ = ["app"]

# Merged into `flotilla` (main.py): `flotilla up`, `flotilla down`.
app = typer.Typer()
console = Console()
err = Console(stderr=True)


class Profile(StrEnum):
    dev = "dev"
    test = "test"
    prod = "prod"


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _report_failure(layout: VarLayout, state: SystemState | None) -> None:
    if state is not None and state.detail:
        err.print(f"[red]{state.phase}:[/] {state.detail}")
    failing = [i for i in state.instances if not i.ready] if state else []
    for instance in failing:
        err.print(f"[bold]--- {instance.name} (last lines of its log)[/]")
        err.print(_tail(layout.log_file(instance.name)), markup=False, highlight=False)
    err.print(f"[bold]--- supervisor[/]\n{_tail(layout.supervisor_log)}", highlight=False)


def _wait_until_ready(
    layout: VarLayout, supervisor: subprocess.Popen[bytes], timeout_s: float
) -> SystemState | None:
    deadline = time.monotonic() + timeout_s
    with console.status("starting") as spinner:
        while time.monotonic() < deadline:
            state = SystemState.read(layout.state_file)
            if state is not None and state.supervisor_pid == supervisor.pid:
                ready = sum(i.ready for i in state.instances)
                spinner.update(
                    f"{state.phase}: {state.detail or f'{ready}/{len(state.instances)} ready'}"
                )
                if state.phase in {"running", "failed"}:
                    return state
            if supervisor.poll() is not None:
                return SystemState.read(layout.state_file)
            time.sleep(0.1)
    return SystemState.read(layout.state_file)


def _stop_supervisor(layout: VarLayout, state: SystemState, grace_s: float = 20.0) -> None:
    with console.status("stopping"):
        stop_pids([state.supervisor_pid], grace_s)
        final = SystemState.read(layout.state_file) or state
        stop_pids(leftover_pids(final, layout.postgres), 5.0)


@app.command()
def up(
    var_dir: VarDir = Path("var"),
    instances: Annotated[
        int, typer.Option(min=1, max=16, help="Instances per service (per shard for the ledger).")
    ] = 2,
    shards: Annotated[int, typer.Option(min=1, max=16, help="Ledger shards.")] = 2,
    gateways: Annotated[
        int,
        typer.Option(
            min=1,
            max=8,
            help="Gateway instances (the first on --gateway-port); more than one share their "
            "rate limits through an embedded Valkey.",
        ),
    ] = 1,
    db: DatabaseOption = Database.sqlite,
    detach: Annotated[
        bool, typer.Option(help="Return once ready; stop with `flotilla down`.")
    ] = False,
    profile: Annotated[
        Profile, typer.Option(help="Settings profile of every service.")
    ] = Profile.dev,
    gateway_port: Annotated[int, typer.Option(help="HTTPS port of the gateway.")] = 8443,
    postgres_url: Annotated[
        str | None,
        typer.Option(
            envvar="FLOTILLA_POSTGRES_URL",
            help="External PostgreSQL server (postgresql+asyncpg://user:pw@host:port); "
            "default: an embedded server under var/pg.",
        ),
    ] = None,
    demo_data: Annotated[bool, typer.Option(help="Seed demo users and accounts.")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every instance.")] = 90.0,
    autoscale: Annotated[
        bool,
        typer.Option(
            help="Add and remove instances by the HPA's rule on requests in flight per "
            "instance (see `flotilla status`).",
            rich_help_panel="Autoscaling",
        ),
    ] = False,
    min_instances: Annotated[
        int,
        typer.Option(
            "--min", min=1, max=16, help="Fewest instances.", rich_help_panel="Autoscaling"
        ),
    ] = 1,
    max_instances: Annotated[
        int,
        typer.Option("--max", min=1, max=16, help="Most instances.", rich_help_panel="Autoscaling"),
    ] = 4,
    target_in_flight: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="Requests in flight per instance to aim at.",
            rich_help_panel="Autoscaling",
        ),
    ] = 2.0,
    scale_down_window: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds of scale-down stabilization.", rich_help_panel="Autoscaling"
        ),
    ] = 30.0,
    with_prometheus: Annotated[
        bool,
        typer.Option(
            help="Also run Prometheus (when its binary is there) scraping every instance, "
            "with deploy/prometheus/rules; `flotilla down` stops it."
        ),
    ] = False,
    prometheus_bin: Annotated[
        str | None,
        typer.Option(
            envvar="FLOTILLA_PROMETHEUS_BIN",
            help="The Prometheus binary (default: `prometheus` on PATH).",
        ),
    ] = None,
    prometheus_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port of Prometheus' web UI and API.")
    ] = prometheus.DEFAULT_PORT,
) -> None:
    """Start the whole system and show its status (Ctrl-C stops it).

    Start every service (N instances each), the gateway and the database; seed demo data;
    wait until all are ready; show a live status table (Ctrl-C stops everything)."""
    scaling_settings = autoscale_settings(
        autoscale, min_instances, max_instances, target_in_flight, scale_down_window
    )
    layout = VarLayout.at(var_dir)
    existing = SystemState.read(layout.state_file)
    if supervisor_alive(existing):
        err.print("Flotilla is already running here: `flotilla status`, or `flotilla down` first.")
        raise typer.Exit(1)
    if not port_is_free(gateway_port):
        err.print(f"Port {gateway_port} is in use; pick another with --gateway-port.")
        raise typer.Exit(1)
    layout.ensure()
    if existing is not None:
        stop_pids(leftover_pids(existing, layout.postgres), 5.0)  # after a killed supervisor
    plan = build_plan(
        layout,
        instances=instances,
        shards=shards,
        gateways=gateways,
        database=db.value,
        profile=profile.value,
        gateway_port=gateway_port,
        log_level=log_level,
        postgres_url=postgres_url,
        demo_data=demo_data and profile is Profile.dev,
    )
    plan.autoscale = scaling_settings
    write_atomically(layout.plan_file, plan.model_dump_json(indent=2))
    layout.state_file.unlink(missing_ok=True)
    started = time.monotonic()
    with layout.supervisor_log.open("ab") as log:
        supervisor = subprocess.Popen(  # noqa: S603 - our own module, our own arguments
            [sys.executable, "-m", "flotilla_cli.launcher.supervisor", str(layout.plan_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl-C reaches us; we stop it in order
        )
    try:
        state = _wait_until_ready(layout, supervisor, timeout)
    except KeyboardInterrupt:
        state = SystemState.read(layout.state_file)
    if state is None or state.phase != "running":
        _report_failure(layout, state)
        if state is not None:
            _stop_supervisor(layout, state)
        else:
            supervisor.terminate()
        raise typer.Exit(1)

    console.print(
        f"[green]All {len(state.instances)} instances ready[/] in "
        f"{time.monotonic() - started:.1f} s ({plan.database}, profile {plan.profile})."
    )
    prometheus.launch(
        console, state, layout, wanted=with_prometheus, binary=prometheus_bin, port=prometheus_port
    )
    if detach:
        console.print(system_view(state, layout))
        console.print("Running in the background: `flotilla status`, `flotilla down`.")
        return
    _watch_until_stopped(layout, state, supervisor)


def _watch_until_stopped(
    layout: VarLayout, state: SystemState, supervisor: subprocess.Popen[bytes]
) -> None:
    """The live status view, until Ctrl-C (or SIGTERM); then stop everything in order."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with Live(system_view(state, layout), console=console, refresh_per_second=2) as live:
            while supervisor.poll() is None:
                time.sleep(1.0)
                latest = SystemState.read(layout.state_file)
                if latest is not None:
                    live.update(system_view(latest, layout))
    except KeyboardInterrupt:
        pass
    if not console.is_terminal:
        console.line()  # a live view written to a file or pipe ends without a newline
    _stop_supervisor(layout, SystemState.read(layout.state_file) or state)
    prometheus.stop(layout)
    console.print("Stopped.")


@app.command()
def down(var_dir: VarDir = Path("var")) -> None:
    """Stop a system started by `flotilla up`.

    SIGTERM, then SIGKILL after a grace period."""
    layout = VarLayout.at(var_dir)
    prometheus.stop(layout)
    state = SystemState.read(layout.state_file)
    if state is None:
        console.print("Nothing is running here.")
        return
    if supervisor_alive(state):
        _stop_supervisor(layout, state)
    else:
        stop_pids(leftover_pids(state, layout.postgres), 5.0)
    console.print("Stopped.")
