"""How a running system looks in the terminal (Rich)."""

from __future__ import annotations

import time

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.state import InstanceState, SystemState

__all__ = [
    "counts_table",
    "scaling_table",
    "status_table",
    "status_view",
    "system_view",
    "urls_panel",
]


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


def _groups(state: SystemState) -> dict[str, list[InstanceState]]:
    groups: dict[str, list[InstanceState]] = {}
    for instance in state.instances:
        if instance.command == "serve" and instance.service != "gateway":
            key = (
                instance.service
                if instance.shard is None
                else f"{instance.service}-s{instance.shard}"
            )
            groups.setdefault(key, []).append(instance)
    return groups


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def counts_table(state: SystemState) -> Table:
    """Instances per service (per ledger shard), and the autoscaler's latest verdict."""
    autoscale = state.autoscale
    title = "Instances"
    if autoscale is not None:
        title += (
            f" (autoscale {autoscale.min_instances}..{autoscale.max_instances}, target "
            f"{autoscale.target_in_flight:g} in flight per instance)"
        )
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("service", no_wrap=True)
    table.add_column("instances", justify="right")
    table.add_column("ready", justify="right")
    if autoscale is not None:
        table.add_column("in flight", justify="right")
        table.add_column("decision")
    for group, members in _groups(state).items():
        row = [group, str(len(members)), str(sum(m.ready for m in members))]
        if autoscale is not None:
            latest = state.autoscale_latest.get(group)
            row += (
                [
                    _metric(latest.metric),
                    f"{latest.from_count} -> {latest.to_count}: {latest.reason}",
                ]
                if latest
                else ["-", "-"]
            )
        table.add_row(*row)
    return table


def scaling_table(state: SystemState) -> Table:
    """The latest changes of instance counts (`flotilla scale`, the autoscaler)."""
    table = Table(title="Scaling", title_justify="left", expand=False)
    for column in ("time", "service", "from -> to", "in flight", "by", "reason"):
        table.add_column(column, no_wrap=column != "reason")
    for event in state.scaling:
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(event.at)),
            event.group,
            f"{event.from_count} -> {event.to_count}",
            _metric(event.metric),
            event.source,
            event.reason,
        )
    return table


def status_view(state: SystemState) -> Group:
    """`flotilla status`: the instances, their counts, and the scaling decisions."""
    parts: list[RenderableType] = [status_table(state), counts_table(state)]
    if state.scaling:
        parts.append(scaling_table(state))
    return Group(*parts)


def urls_panel(state: SystemState, layout: VarLayout) -> Panel:
    gateway = state.gateway_url
    ca = layout.tls / "ca.pem"
    lines = [
        f"[bold]web[/]       {gateway}/  (shop, bank, operator console)",
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
    return Group(status_view(state), urls_panel(state, layout), Text(footer, style="dim"))
