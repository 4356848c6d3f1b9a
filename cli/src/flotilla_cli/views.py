"""How a running system looks in the terminal (Rich)."""

from __future__ import annotations

import time

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from flotilla_cli.layout import VarLayout
from flotilla_cli.state import SystemState

__all__ = ["status_table", "system_view", "urls_panel"]


def _mib(value: int | None) -> str:
    return f"{value / 2**20:.0f} MiB" if value else "-"


def status_table(state: SystemState) -> Table:
    table = Table(
        title=f"Flotilla: {state.phase}",
        title_justify="left",
        caption="RSS: resident memory; USS: memory only this instance uses",
        caption_justify="left",
        expand=False,
    )
    numeric = {"pid", "port", "restarts", "RSS", "USS"}
    # The instance's name says its service (and shard): `accounts-s1-0`.
    table.add_column("instance", no_wrap=True)
    for column in ("pid", "port", "ready", "restarts", "RSS", "USS"):
        table.add_column(column, justify="right" if column in numeric else "left")
    for instance in state.instances:
        ready = Text("ready", style="green") if instance.ready else Text("starting", style="yellow")
        if instance.pid is None and state.phase in {"running", "starting"}:
            ready = Text("restarting", style="red")
        table.add_row(
            instance.name,
            str(instance.pid or "-"),
            str(instance.port or "-"),  # a relay listens on no port
            ready,
            str(instance.restarts),
            _mib(instance.rss_bytes),
            _mib(instance.uss_bytes),
        )
    return table


def urls_panel(state: SystemState, layout: VarLayout) -> Panel:
    gateway = state.gateway_url
    ca = layout.tls / "ca.pem"
    lines = [
        f"[bold]gateway[/]   {gateway}",
        f"[bold]API docs[/]  {gateway}/docs",
        f"[bold]OpenAPI[/]   {gateway}/openapi.json",
        f"[bold]metrics[/]   {gateway}/metrics",
        f"[bold]CA[/]        {ca}  (curl --cacert {ca} {gateway}/readyz)",
    ]
    if state.nats_url:
        lines.append(f"[bold]events[/]    {state.nats_url}  (flotilla events tail)")
    if layout.credentials_file.exists():
        lines.append(f"[bold]demo users[/] {layout.credentials_file}  (try: flotilla demo)")
    lines.append(f"[bold]logs[/]      {layout.logs}  (flotilla logs)")
    return Panel("\n".join(lines), title="Open", title_align="left", expand=False)


def system_view(state: SystemState, layout: VarLayout) -> Group:
    footer = ""
    if state.ready_at:
        ready_s = state.ready_at - state.started_at
        footer = f"all ready in {ready_s:.1f} s; up {time.time() - state.started_at:.0f} s"
    return Group(status_table(state), urls_panel(state, layout), Text(footer, style="dim"))
