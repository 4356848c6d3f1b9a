"""Reading the span files (`flotilla_kit.tracing.files`): a trace found by its id among big
files (lines cut by chunk borders, a line cut by a crash, a cap on the spans kept), the
tree and its waterfall, the newest traces through the gateway read from the files' ends
(and only the ends), and the files the real exporter writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from flotilla_kit.tracing import JsonLinesSpanExporter, Tracing, files
from flotilla_kit.tracing.files import (
    as_trace_id,
    build_tree,
    last_trace_id,
    newest_trace_id,
    read_spans,
    read_trace,
    recent_traces,
)

TRACE = "a" * 32
OTHER = "b" * 32
_EPOCH_NS = 1_700_000_000 * 10**9
_MS = 1_000_000


def span(
    span_id: str,
    parent: str | None,
    start_ms: float,
    end_ms: float,
    *,
    trace: str = TRACE,
    service: str = "payments",
    name: str = "work",
    **attributes: Any,
) -> dict[str, Any]:
    """A record as `JsonLinesSpanExporter` writes it."""
    return {
        "trace_id": trace,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "kind": "SERVER",
        "service": service,
        "instance": f"{service}-0",
        "start_unix_nano": _EPOCH_NS + round(start_ms * _MS),
        "end_unix_nano": _EPOCH_NS + round(end_ms * _MS),
        "status": "UNSET",
        "status_message": None,
        "attributes": attributes,
    }


def write(path: Path, records: list[dict[str, Any]], tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records) + tail)


def filler(n: int, *, start_ms: float = 0.0, service: str = "inventory") -> list[dict[str, Any]]:
    """`n` spans of other traces, one per millisecond from `start_ms`."""
    return [
        span(
            f"{i:016x}", None, start_ms + i, start_ms + i + 0.5, trace=f"{i:032x}", service=service
        )
        for i in range(1, n + 1)
    ]


def transfer(traces: Path) -> None:
    """One trace across three processes (the gateway's caller's span is not on disk)."""
    write(traces / "gateway-0.jsonl", [span("g1", "c1", 0, 10, service="gateway", name="POST /t")])
    write(
        traces / "payments-0.jsonl",
        [
            span("p2", "p1", 4, 6, name="Commit"),
            span("p1", "g1", 1, 9, name="POST /t"),
            span("p3", "p1", 2, 3, name="Prepare"),
            span("p3", "p1", 2, 3, name="Prepare"),  # written twice: kept once
        ],
    )
    write(traces / "accounts-s0-0.jsonl", [span("a1", "p3", 2.2, 2.8, service="accounts")])


def test_a_trace_is_a_tree_and_a_waterfall_of_offsets_from_its_start(tmp_path: Path) -> None:
    transfer(tmp_path)
    tree = read_trace(tmp_path, TRACE)
    assert tree is not None
    assert not tree.truncated
    assert tree.services() == ["accounts", "gateway", "payments"]
    assert tree.duration_ms == 10.0
    bars = tree.waterfall()
    # Depth first, each span under its parent, siblings by start.
    assert [(b.span_id, b.depth) for b in bars] == [
        ("g1", 0), ("p1", 1), ("p3", 2), ("a1", 3), ("p2", 2),
    ]  # fmt: skip
    commit = bars[-1]
    assert (commit.start_ms, commit.end_ms, commit.duration_ms) == (4.0, 6.0, 2.0)
    assert commit.parent_span_id == "p1"
    assert commit.span.name == "Commit"
    assert bars[3].start_ms == pytest.approx(2.2)
    assert read_trace(tmp_path, OTHER) is None
    assert read_trace(tmp_path / "missing", TRACE) is None


def test_a_trace_is_found_among_big_files_whatever_the_chunk_borders_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks far smaller than a line: every line of the trace is cut by a border.
    monkeypatch.setattr(files, "_CHUNK", 97)
    noise = filler(300)
    mine = [span(f"{i:016x}", None, 1000 + i, 1001 + i) for i in range(5)]
    write(tmp_path / "payments-0.jsonl", noise[:100] + mine[:2] + noise[100:200])
    write(tmp_path / "payments-1.jsonl", noise[200:] + mine[2:4])
    # The last line of a file without its line break (written, not yet ended by one) is
    # read; a line a crash cut short is skipped.
    write(tmp_path / "payments-2.jsonl", [], tail=json.dumps(mine[4]))
    write(tmp_path / "payments-3.jsonl", [], tail=f'{{"trace_id": "{TRACE}", "span_id": "x')
    found = read_spans(tmp_path, TRACE)
    assert sorted(s.span_id for s in found) == sorted(r["span_id"] for r in mine)
    assert found == [s for s in read_spans(tmp_path) if s.trace_id == TRACE]  # the same order


def test_a_trace_of_too_many_spans_is_cut_and_says_so(tmp_path: Path) -> None:
    write(tmp_path / "svc-0.jsonl", [span(f"{i:016x}", None, i, i + 1) for i in range(50)])
    cut = read_trace(tmp_path, TRACE, max_spans=20)
    assert cut is not None
    assert cut.truncated
    assert sum(1 for _ in cut.spans()) == 20
    whole = read_trace(tmp_path, TRACE, max_spans=50)
    assert whole is not None
    assert not whole.truncated


def test_recent_traces_are_the_newest_through_the_gateway_newest_first(tmp_path: Path) -> None:
    write(
        tmp_path / "gateway-0.jsonl",
        [
            span("g1", None, 0, 10, trace="1" * 32, service="gateway", name="GET /a"),
            span("g2", None, 20, 25, trace="2" * 32, service="gateway", name="GET /b"),
            span(
                "g3", None, 30, 33, trace="3" * 32, service="gateway", name="POST /c",
                **{"http.response.status_code": 502},
            ),
        ],
    )  # fmt: skip
    # A second gateway: one request inside another's trace (called back through it).
    write(
        tmp_path / "gateway-1.jsonl",
        [
            span("h1", None, 22, 24, trace="4" * 32, service="gateway", name="GET /d"),
            span("h2", "x", 40, 41, trace="2" * 32, service="gateway", name="GET /b2"),
        ],
    )
    write(tmp_path / "payments-0.jsonl", [span("p", "g3", 31, 32, trace="3" * 32)])
    recent = recent_traces(tmp_path, limit=3)
    assert [(t.trace_id[0], t.name) for t in recent] == [("2", "GET /b2"), ("3", "POST /c"), ("4", "GET /d")]  # fmt: skip
    assert recent[1].status_code == 502
    assert recent[1].duration_ms == 3.0
    assert recent[1].started_at.timestamp() == pytest.approx(1_700_000_000.03)
    assert newest_trace_id(tmp_path) == "2" * 32
    assert newest_trace_id(tmp_path) == last_trace_id(read_spans(tmp_path))
    assert recent_traces(tmp_path, limit=0) == []
    assert newest_trace_id(tmp_path / "missing") is None
    write(tmp_path / "quiet" / "payments-0.jsonl", [span("p", None, 1, 2)])
    assert newest_trace_id(tmp_path / "quiet") is None


def test_the_newest_traces_are_read_from_the_ends_of_the_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long run: an hour of older spans (ended long before the newest requests began),
    # then the latest requests; every file is in the order its spans ended.
    old = filler(5000, service="gateway")
    latest = [
        span(f"{i:016x}", None, 3_600_000 + i, 3_600_000 + i + 2, trace=f"{i:031x}f",
             service="gateway", name="GET /new")
        for i in range(10)
    ]  # fmt: skip
    write(tmp_path / "gateway-0.jsonl", old + latest)
    write(tmp_path / "orders-0.jsonl", filler(5000, service="orders"))
    read: list[int] = []
    backwards = files._lines_backwards

    def counted(path: Path) -> Iterator[bytes]:
        for line in backwards(path):
            read.append(1)
            yield line

    monkeypatch.setattr(files, "_lines_backwards", counted)
    recent = recent_traces(tmp_path, limit=5)
    assert [t.trace_id for t in recent] == [r["trace_id"] for r in reversed(latest[5:])]
    # The 10 newest lines and the one before them, which ended an hour before: of 10,010.
    assert len(read) <= 12, len(read)
    monkeypatch.setattr(files, "_lines_backwards", backwards)
    assert newest_trace_id(tmp_path) == last_trace_id(read_spans(tmp_path))


def test_the_exporters_files_are_read_back(tmp_path: Path) -> None:
    traced = Tracing(
        service="gateway", instance="gateway-0", exporter=JsonLinesSpanExporter(tmp_path / "gateway-0.jsonl")
    )  # fmt: skip
    with traced.tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER) as outer:
        with traced.tracer.start_as_current_span("inner"):
            pass
        trace_id = format(outer.get_span_context().trace_id, "032x")
    traced.shutdown()
    assert newest_trace_id(tmp_path) == trace_id
    tree = read_trace(tmp_path, trace_id)
    assert tree is not None
    assert [(b.span.name, b.depth) for b in tree.waterfall()] == [("GET /x", 0), ("inner", 1)]
    assert build_tree(read_spans(tmp_path), trace_id) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" " + "AB" * 16 + "\n", "ab" * 16),
        ("ab" * 16, "ab" * 16),
        ("ab" * 15, None),
        ("zz" * 16, None),
        ("../" + "a" * 29, None),
        ("", None),
    ],
)
def test_a_trace_id_is_32_hex_digits(text: str, expected: str | None) -> None:
    assert as_trace_id(text) == expected
