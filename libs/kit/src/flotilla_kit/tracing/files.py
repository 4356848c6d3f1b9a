"""Reading the span files under `var/traces/`: one trace found by its id, the newest traces
through the gateway, and a trace as a tree (`flotilla trace`) or as a waterfall (the web
console).

Every instance appends its finished spans as JSON lines to `<traces_dir>/<instance>.jsonl`
(`JsonLinesSpanExporter`; a full file is set aside as `<instance>.old.jsonl`). A trace is
the spans with one trace id, spread over the files of every process it went through; each
span names its parent, so the tree is rebuilt from those links. A span whose parent is not
on disk (the caller's own span, or one not flushed yet) is a root.

Reading is bounded, because these files grow to megabytes per instance:

- one trace (`read_trace`): each file is read in chunks of 1 MiB and searched for the
  trace id as bytes; only the lines that hold it are decoded, and at most `max_spans`
  spans are kept (50 MB in 16 files: 42 ms of CPU, measured here);
- the newest traces (`recent_traces`, `newest_trace_id`): each file is read backwards from
  its end, and only until what is left in it ended before the traces already found began
  (a file is in the order its spans ended), so a long run's history is not read at all
  (the same 50 MB: 26 ms, where decoding every span took 1.1 s).

Nothing here imports the OpenTelemetry SDK: a reader (a command, the web console) loads
only this module.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_TRACE_SPANS",
    "SPAN_FILES",
    "SpanNode",
    "TraceSummary",
    "TraceTree",
    "WaterfallBar",
    "as_trace_id",
    "build_tree",
    "last_trace_id",
    "newest_trace_id",
    "read_spans",
    "read_trace",
    "recent_traces",
]

# The span files of a traces folder (`JsonLinesSpanExporter` writes `<instance>.jsonl`
# and sets a full one aside as `<instance>.old.jsonl`).
SPAN_FILES = "*.jsonl"
# A trace of more spans than this is cut (and says so): a page and a terminal stay usable,
# and a reader's memory stays bounded whatever the files hold.
MAX_TRACE_SPANS = 10_000

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 1 << 20  # forward search: 1 MiB read at a time
_BACK_CHUNK = 64 << 10  # backward reading: most answers are in a file's last 64 KiB
# A span is a line of a few hundred bytes; a longer run without a line break is not one.
_MAX_LINE = 1 << 20
# A file is in the order its spans ended, give or take a batch's clock offset (the gateway
# turns its monotonic timings into wall time once per batch): read this far past the point
# where the order says nothing newer can come.
_ORDER_SLACK_NS = 5_000_000_000
_END = re.compile(rb'"end_unix_nano":\s*(\d+)')


@dataclass
class SpanNode:
    """One span as written to the traces folder, with its children once in a tree."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str
    instance: str
    start_ns: int  # unix time, nanoseconds
    end_ns: int
    status: str  # UNSET, OK or ERROR
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
        """The span and its children, nested (`flotilla trace --json`)."""
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
        """This span, then its descendants, depth first, children in start order."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class WaterfallBar:
    """One span's row in a waterfall: how deep it sits and where its bar starts and ends,
    in milliseconds from the start of the trace (its earliest span)."""

    span: SpanNode
    depth: int  # 0 for a root, 1 for its children, ...
    start_ms: float
    end_ms: float

    @property
    def span_id(self) -> str:
        return self.span.span_id

    @property
    def parent_span_id(self) -> str | None:
        return self.span.parent_span_id

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass
class TraceTree:
    """The spans of one trace linked to their parents (`build_tree`, `read_trace`)."""

    trace_id: str
    roots: list[SpanNode]  # by start time
    # More spans than `max_spans` were on disk: the tree holds the first ones found.
    truncated: bool = False

    @property
    def start_ns(self) -> int:
        return min(root.start_ns for root in self.roots)

    @property
    def end_ns(self) -> int:
        return max(span.end_ns for span in self.spans())

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def spans(self) -> Iterator[SpanNode]:
        """Every span, depth first from each root in turn."""
        for root in self.roots:
            yield from root.walk()

    def services(self) -> list[str]:
        return sorted({span.service for span in self.spans()})

    def waterfall(self) -> list[WaterfallBar]:
        """Every span as a bar, in the order a waterfall draws them (depth first, each
        span under its parent, siblings by start time); offsets from the trace's start."""
        origin = self.start_ns
        bars: list[WaterfallBar] = []

        def add(span: SpanNode, depth: int) -> None:
            bars.append(
                WaterfallBar(
                    span=span,
                    depth=depth,
                    start_ms=(span.start_ns - origin) / 1e6,
                    end_ms=(span.end_ns - origin) / 1e6,
                )
            )
            for child in span.children:
                add(child, depth + 1)

        for root in self.roots:
            add(root, 0)
        return bars

    def to_json(self) -> dict[str, Any]:
        """The trace and its spans, nested (`flotilla trace --json`)."""
        return {
            "trace_id": self.trace_id,
            "duration_ms": round((self.end_ns - self.start_ns) / 1e6, 3),
            "span_count": sum(1 for _ in self.spans()),
            "services": self.services(),
            "roots": [root.to_json() for root in self.roots],
        }


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """A trace as a list of recent traces shows it: its newest span of the gateway (the
    request that came through the front door), `recent_traces`."""

    trace_id: str
    name: str  # the gateway's span: `POST /api/v1/transfers` (method and route)
    instance: str
    start_ns: int
    end_ns: int
    status: str  # UNSET, OK or ERROR
    status_code: int | None  # the HTTP status the gateway answered, when it says

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def started_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.start_ns / 1e9, dt.UTC)

    @classmethod
    def of(cls, span: SpanNode) -> TraceSummary:
        code = span.attributes.get("http.response.status_code")
        try:
            status_code = int(code) if code is not None else None
        except (TypeError, ValueError):
            status_code = None
        return cls(
            trace_id=span.trace_id,
            name=span.name,
            instance=span.instance,
            start_ns=span.start_ns,
            end_ns=span.end_ns,
            status=span.status,
            status_code=status_code,
        )


def as_trace_id(text: str) -> str | None:
    """`text` as a trace id (32 hex digits, as in `trace.id` of the logs and in a
    `traceparent`), lower case and stripped; None if it is not one."""
    candidate = text.strip().lower()
    return candidate if _TRACE_ID.match(candidate) else None


def _span_of_line(line: bytes) -> SpanNode | None:
    try:
        record = json.loads(line)
    except ValueError:  # a line cut by a crash, or not text
        return None
    return SpanNode.of(record) if isinstance(record, dict) else None


def _span_files(traces_dir: Path) -> list[Path]:
    try:
        return sorted(path for path in traces_dir.glob(SPAN_FILES) if path.is_file())
    except OSError:
        return []


def _lines_holding(path: Path, needle: bytes) -> Iterator[bytes]:
    """The lines of `path` that contain `needle`, in file order, read 1 MiB at a time:
    the search runs over the raw bytes, and only the lines that match are cut out."""
    try:
        handle = path.open("rb")
    except OSError:  # set aside or removed since it was listed
        return
    with handle:
        carry = b""  # the start of a line the previous chunk cut
        while chunk := handle.read(_CHUNK):
            block = carry + chunk if carry else chunk
            cut = block.rfind(b"\n") + 1
            yield from _matches(block, needle, cut)
            carry = block[cut:]
            if len(carry) > _MAX_LINE:
                carry = b""
        if carry:
            yield from _matches(carry, needle, len(carry))


def _matches(block: bytes, needle: bytes, end: int) -> Iterator[bytes]:
    position = block.find(needle, 0, end)
    while position != -1:
        start = block.rfind(b"\n", 0, position) + 1
        stop = block.find(b"\n", position, end)
        if stop == -1:
            stop = end
        yield block[start:stop]
        position = block.find(needle, stop, end)


def _every_line(path: Path) -> Iterator[bytes]:
    try:
        handle = path.open("rb")
    except OSError:
        return
    with handle:
        yield from handle


def _lines_backwards(path: Path) -> Iterator[bytes]:
    """The lines of `path`, the last first, read from the end 64 KiB at a time."""
    try:
        handle = path.open("rb")
    except OSError:
        return
    with handle:
        position = handle.seek(0, os.SEEK_END)
        carry = b""  # the end of a line whose start is further back
        while position > 0:
            size = min(_BACK_CHUNK, position)
            position -= size
            handle.seek(position)
            lines = (handle.read(size) + carry).split(b"\n")
            carry = lines.pop(0) if position > 0 else b""
            if len(carry) > _MAX_LINE:
                carry = b""
            for line in reversed(lines):
                if line:
                    yield line


def _collect(
    traces_dir: Path, trace_id: str | None, max_spans: int | None
) -> tuple[list[SpanNode], bool]:
    spans: list[SpanNode] = []
    needle = f'"{trace_id}"'.encode() if trace_id is not None else None
    for path in _span_files(traces_dir):
        lines = _every_line(path) if needle is None else _lines_holding(path, needle)
        for line in lines:
            span = _span_of_line(line)
            if span is None or (trace_id is not None and span.trace_id != trace_id):
                continue
            if max_spans is not None and len(spans) >= max_spans:
                return spans, True
            spans.append(span)
    return spans, False


def read_spans(
    traces_dir: Path, trace_id: str | None = None, *, max_spans: int | None = None
) -> list[SpanNode]:
    """The spans in the span files of `traces_dir`: of one trace when `trace_id` is given
    (searched as bytes, so only its lines are decoded), else every span of every file
    (for tests and tools: that reads and decodes everything). At most `max_spans`.
    Lines that are not span records (a line cut by a crash) are skipped; a folder that
    does not exist holds no spans."""
    return _collect(traces_dir, trace_id, max_spans)[0]


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


def read_trace(
    traces_dir: Path, trace_id: str, *, max_spans: int = MAX_TRACE_SPANS
) -> TraceTree | None:
    """One trace from the span files of `traces_dir`, as a tree; None if no span of it is
    there (an unknown id, a trace not sampled, or spans not flushed yet: they are written
    within a second or so). More than `max_spans` spans: the first ones found, and
    `truncated` says so. `trace_id` is used as given: check it with `as_trace_id` first."""
    spans, truncated = _collect(traces_dir, trace_id, max_spans)
    tree = build_tree(spans, trace_id)
    if tree is not None:
        tree.truncated = truncated
    return tree


def last_trace_id(spans: Iterable[SpanNode]) -> str | None:
    """The trace of the newest span the gateway wrote, among `spans` (a request through
    the front door). To find it in a traces folder, `newest_trace_id` reads far less."""
    newest: SpanNode | None = None
    for span in spans:
        if span.service == "gateway" and (newest is None or span.start_ns > newest.start_ns):
            newest = span
    return newest.trace_id if newest is not None else None


def recent_traces(
    traces_dir: Path, *, limit: int = 20, service: str = "gateway"
) -> list[TraceSummary]:
    """The newest `limit` traces that have a span of `service` (by default: requests
    through the gateway), newest first, each summed up by its newest span of `service`.

    Each file is read backwards and left once the rest of it ended before the `limit`
    traces found so far began: a file holds its spans in the order they ended, so nothing
    further back can be newer. The files of `service` are read first, so the others are
    mostly left after their last chunk."""
    if limit < 1:
        return []
    found: dict[str, SpanNode] = {}  # trace id -> its newest span of `service` seen
    marker = f'"{service}"'.encode()
    files = _span_files(traces_dir)
    files.sort(key=lambda path: not path.name.startswith(f"{service}-"))
    for path in files:
        for line in _lines_backwards(path):
            if len(found) >= limit:
                floor = min(span.start_ns for span in found.values())
                ended = _END.search(line)
                if ended is not None and int(ended.group(1)) < floor - _ORDER_SLACK_NS:
                    break
            if marker not in line:
                continue
            span = _span_of_line(line)
            if span is None or span.service != service:
                continue
            known = found.get(span.trace_id)
            if known is None or span.start_ns > known.start_ns:
                found[span.trace_id] = span
                if len(found) > limit:
                    oldest = min(found.values(), key=lambda s: s.start_ns)
                    del found[oldest.trace_id]
    newest_first = sorted(found.values(), key=lambda s: s.start_ns, reverse=True)
    return [TraceSummary.of(span) for span in newest_first]


def newest_trace_id(traces_dir: Path) -> str | None:
    """The trace of the newest span the gateway wrote in `traces_dir` (`flotilla trace
    --last`): `last_trace_id` of every span there, reading only the ends of the files."""
    recent = recent_traces(traces_dir, limit=1)
    return recent[0].trace_id if recent else None
