"""`flotilla trace TRACE_ID`: one trace from the span files under `var/traces/`, as a tree.

Every instance writes its finished spans as JSON lines to `var/traces/<instance>.jsonl`
(`flotilla_kit.tracing`). Finding a trace in those files and rebuilding its tree is the
kit's (`flotilla_kit.tracing.files`, which the web console's waterfall reads too); the
rendering is here. A span whose parent is not on disk (the caller's own span, or one not
flushed yet) is shown as a root.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from flotilla_cli.options import VarDir
from flotilla_kit.tracing.files import (
    MAX_TRACE_SPANS,
    SpanNode,
    TraceTree,
    as_trace_id,
    build_tree,
    last_trace_id,
    newest_trace_id,
    read_spans,
    read_trace,
)

__all__ = [
    "SpanNode",
    "TraceTree",
    "build_tree",
    "last_trace_id",
    "read_spans",
    "render_tree",
    "trace_command",
]

# Shown after the name, when a span has them: attribute -> its short label.
_KEY_ATTRIBUTES = {
    "http.response.status_code": "status",
    "flotilla.upstream.instance": "upstream",
    "rpc.grpc.status_code": "grpc",
    "db.namespace": "db",
    "flotilla.db.statements": "statements",
    "flotilla.db.outcome": "outcome",
    "messaging.destination.name": "subject",
    "messaging.consumer.group.name": "consumer",
    "server.port": "port",
}


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.2f} ms"


def _label(span: SpanNode, origin_ns: int) -> str:
    status = {"ERROR": "[red]ERROR[/]", "OK": "[green]OK[/]"}.get(span.status, "[dim]-[/]")
    details = " ".join(
        f"{label}={escape(str(span.attributes[key]))}"
        for key, label in _KEY_ATTRIBUTES.items()
        if key in span.attributes
    )
    message = f" {escape(span.status_message)}" if span.status_message else ""
    return (
        f"[bold cyan]{escape(span.service)}[/] [dim]{escape(span.instance)}[/] "
        f"[bold]{escape(span.name)}[/] [dim]{span.kind.lower()}[/]  "
        f"+{_ms(span.start_ns - origin_ns)}  [yellow]{_ms(span.duration_ns)}[/]  "
        f"{status}{message}" + (f"  [dim]{details}[/]" if details else "")
    )


def render_tree(tree: TraceTree) -> Tree:
    origin = tree.start_ns
    spans = sum(1 for _ in tree.spans())
    top = Tree(
        f"[bold]trace {tree.trace_id}[/]  {_ms(tree.end_ns - origin)}, {spans} spans, "
        f"services: {', '.join(tree.services())}"
    )

    def add(branch: Tree, span: SpanNode) -> None:
        node = branch.add(_label(span, origin))
        for child in span.children:
            add(node, child)

    for root in tree.roots:
        add(top, root)
    return top


def trace_command(
    trace_id: Annotated[
        str | None, typer.Argument(help="The trace id: 32 hex digits (as in `trace.id` of logs).")
    ] = None,
    last: Annotated[
        bool, typer.Option("--last", help="The newest trace that came through the gateway.")
    ] = False,
    var_dir: VarDir = Path("var"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the tree as JSON.")] = False,
) -> None:
    """Show one trace as a tree of its spans.

    Show one trace as a tree: service, span, start offset, duration, status and key
    attributes of each span, from the span files under VAR_DIR/traces."""
    err = Console(stderr=True)
    traces_dir = var_dir / "traces"
    if (trace_id is None) == (not last):
        err.print("Give a TRACE_ID or --last (not both).")
        raise typer.Exit(2)
    if trace_id is not None:
        given, trace_id = trace_id, as_trace_id(trace_id)
        if trace_id is None:
            err.print(f"Not a trace id: {given.strip().lower()!r} (32 hex digits expected).")
            raise typer.Exit(2)
    if not traces_dir.is_dir():
        err.print(f"No traces under {traces_dir} (is a system running there, with tracing on?)")
        raise typer.Exit(1)
    if trace_id is None:
        trace_id = newest_trace_id(traces_dir)
        if trace_id is None:
            err.print(f"No trace through the gateway under {traces_dir} yet.")
            raise typer.Exit(1)
    tree = read_trace(traces_dir, trace_id)
    if tree is None:
        err.print(
            f"No spans of trace {trace_id} under {traces_dir} "
            "(unknown id, not sampled, or not flushed yet: spans are written within a second)."
        )
        raise typer.Exit(1)
    if tree.truncated:
        err.print(f"[yellow]More spans than {MAX_TRACE_SPANS}: showing the first found.[/]")
    if as_json:
        sys.stdout.write(json.dumps(tree.to_json(), indent=2) + "\n")
        return
    Console(highlight=False).print(render_tree(tree))
