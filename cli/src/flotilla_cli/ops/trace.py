"""`flotilla trace TRACE_ID`: one trace from the span files under `var/traces/`, as a tree.

Every instance writes its finished spans as JSON lines to `var/traces/<instance>.jsonl`
(`flotilla_kit.tracing`). A trace is the spans with one trace id; each span names its
parent, so the tree is rebuilt from those links. A span whose parent is not on disk
(the caller's own span, or one not flushed yet) is shown as a root.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from flotilla_cli.options import VarDir

__all__ = [
    "SpanNode",
    "TraceTree",
    "build_tree",
    "last_trace_id",
    "read_spans",
    "render_tree",
    "trace_command",
]

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
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


@dataclass
class SpanNode:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str
    instance: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str | None
    attributes: dict[str, Any]
    children: list[SpanNode] = field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @classmethod
    def of(cls, record: dict[str, Any]) -> SpanNode | None:
        """A span from its JSON record, or None if the record is not one."""
        try:
            return cls(
                trace_id=str(record["trace_id"]),
                span_id=str(record["span_id"]),
                parent_span_id=record.get("parent_span_id"),
                name=str(record["name"]),
                kind=str(record.get("kind", "INTERNAL")),
                service=str(record.get("service") or "?"),
                instance=str(record.get("instance") or "?"),
                start_ns=int(record["start_unix_nano"]),
                end_ns=int(record["end_unix_nano"]),
                status=str(record.get("status", "UNSET")),
                status_message=record.get("status_message"),
                attributes=dict(record.get("attributes") or {}),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "kind": self.kind,
            "service": self.service,
            "instance": self.instance,
            "start_unix_nano": self.start_ns,
            "end_unix_nano": self.end_ns,
            "duration_ms": round(self.duration_ns / 1e6, 3),
            "status": self.status,
            "status_message": self.status_message,
            "attributes": self.attributes,
            "children": [child.to_json() for child in self.children],
        }

    def walk(self) -> Iterator[SpanNode]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class TraceTree:
    trace_id: str
    roots: list[SpanNode]

    @property
    def start_ns(self) -> int:
        return min(root.start_ns for root in self.roots)

    @property
    def end_ns(self) -> int:
        return max(span.end_ns for span in self.spans())

    def spans(self) -> Iterator[SpanNode]:
        for root in self.roots:
            yield from root.walk()

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "duration_ms": round((self.end_ns - self.start_ns) / 1e6, 3),
            "span_count": sum(1 for _ in self.spans()),
            "services": sorted({span.service for span in self.spans()}),
            "roots": [root.to_json() for root in self.roots],
        }


def read_spans(traces_dir: Path, trace_id: str | None = None) -> list[SpanNode]:
    """Every span in the `*.jsonl` files of `traces_dir` (of one trace, if given).
    Lines that are not span records (a line cut by a crash) are skipped."""
    spans: list[SpanNode] = []
    needle = f'"{trace_id}"' if trace_id else None
    for path in sorted(traces_dir.glob("*.jsonl")):
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if needle is not None and needle not in line:
                    continue  # cheaper than decoding every line of a long run
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                span = SpanNode.of(record) if isinstance(record, dict) else None
                if span is not None and (trace_id is None or span.trace_id == trace_id):
                    spans.append(span)
    return spans


def build_tree(spans: Iterable[SpanNode], trace_id: str) -> TraceTree | None:
    """The spans of `trace_id` linked to their parents, children by start time; None if
    there are none. Spans whose parent is absent are roots. A span written twice (an
    exporter retried) is kept once."""
    by_id: dict[str, SpanNode] = {}
    for span in spans:
        if span.trace_id == trace_id and span.span_id not in by_id:
            span.children = []
            by_id[span.span_id] = span
    if not by_id:
        return None
    roots: list[SpanNode] = []
    for span in by_id.values():
        parent = by_id.get(span.parent_span_id) if span.parent_span_id else None
        if parent is None or parent is span:
            roots.append(span)
        else:
            parent.children.append(span)
    for span in by_id.values():
        span.children.sort(key=lambda s: (s.start_ns, s.span_id))
    roots.sort(key=lambda s: (s.start_ns, s.span_id))
    return TraceTree(trace_id, roots)


def last_trace_id(spans: Iterable[SpanNode]) -> str | None:
    """The trace of the newest span the gateway wrote (a request through the front door)."""
    newest: SpanNode | None = None
    for span in spans:
        if span.service == "gateway" and (newest is None or span.start_ns > newest.start_ns):
            newest = span
    return newest.trace_id if newest is not None else None


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
    services = sorted({span.service for span in tree.spans()})
    top = Tree(
        f"[bold]trace {tree.trace_id}[/]  {_ms(tree.end_ns - origin)}, {spans} spans, "
        f"services: {', '.join(services)}"
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
        trace_id = trace_id.strip().lower()
        if not _TRACE_ID.match(trace_id):
            err.print(f"Not a trace id: {trace_id!r} (32 hex digits expected).")
            raise typer.Exit(2)
    if not traces_dir.is_dir():
        err.print(f"No traces under {traces_dir} (is a system running there, with tracing on?)")
        raise typer.Exit(1)
    if trace_id is None:
        trace_id = last_trace_id(read_spans(traces_dir))
        if trace_id is None:
            err.print(f"No trace through the gateway under {traces_dir} yet.")
            raise typer.Exit(1)
    tree = build_tree(read_spans(traces_dir, trace_id), trace_id)
    if tree is None:
        err.print(
            f"No spans of trace {trace_id} under {traces_dir} "
            "(unknown id, not sampled, or not flushed yet: spans are written within a second)."
        )
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write(json.dumps(tree.to_json(), indent=2) + "\n")
        return
    Console(highlight=False).print(render_tree(tree))
