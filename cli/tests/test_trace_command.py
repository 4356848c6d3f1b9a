"""`flotilla trace`: span files -> a tree (parents, orphans, duplicates, order), printed
with Rich or as JSON; clear errors for a bad or unknown id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flotilla_cli.main import app
from flotilla_cli.ops.trace import build_tree, last_trace_id, read_spans, render_tree

TRACE = "a" * 32
OTHER = "b" * 32
_EPOCH_NS = 1_700_000_000 * 10**9


def _span(
    span_id: str,
    parent: str | None,
    start_ms: float,
    end_ms: float,
    *,
    service: str = "payments",
    name: str = "work",
    trace: str = TRACE,
    **attributes: Any,
) -> dict[str, Any]:
    return {
        "trace_id": trace,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "kind": "SERVER",
        "service": service,
        "instance": f"{service}-0",
        "start_unix_nano": _EPOCH_NS + round(start_ms * 1_000_000),
        "end_unix_nano": _EPOCH_NS + round(end_ms * 1_000_000),
        "status": "UNSET",
        "status_message": None,
        "attributes": attributes,
    }


def _write(directory: Path, name: str, *records: dict[str, Any], junk: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records]
    (directory / f"{name}.jsonl").write_text("\n".join(lines) + "\n" + junk)


def _system(tmp_path: Path) -> Path:
    traces = tmp_path / "traces"
    _write(
        traces,
        "gateway-0",
        _span("g1", "c1", 0, 10, service="gateway", name="POST /api/v1/transfers"),
        _span("g2", None, 50, 51, service="gateway", name="GET /old", trace=OTHER),
    )
    _write(
        traces,
        "payments-0",
        _span("p2", "p1", 4, 6, name="ledger.v1.Ledger/Commit", **{"rpc.method": "Commit"}),
        _span(
            "p1",
            "g1",
            1,
            9,
            name="POST /api/v1/transfers",
            **{"http.route": "/x", "http.response.status_code": "201"},
        ),
        _span("p3", "p1", 2, 3, name="ledger.v1.Ledger/Prepare", **{"rpc.method": "Prepare"}),
        _span("p3", "p1", 2, 3, name="ledger.v1.Ledger/Prepare"),  # written twice
        junk='{"trace_id": "aaaa", "cut sh',  # a line cut short by a crash
    )
    _write(traces, "accounts-s0-0", _span("a1", "p3", 2.2, 2.8, service="accounts"))
    return tmp_path


def test_the_tree_follows_parents_and_orders_children_by_start(tmp_path: Path) -> None:
    var = _system(tmp_path)
    tree = build_tree(read_spans(var / "traces", TRACE), TRACE)
    assert tree is not None
    (root,) = tree.roots  # the caller's own span (c1) is not on disk: g1 is the root
    assert (root.span_id, root.service) == ("g1", "gateway")
    (payments,) = root.children
    assert [c.span_id for c in payments.children] == ["p3", "p2"]
    assert [c.span_id for c in payments.children[0].children] == ["a1"]
    assert sum(1 for _ in tree.spans()) == 5
    assert tree.end_ns - tree.start_ns == 10_000_000
    assert build_tree(read_spans(var / "traces", TRACE), "c" * 32) is None


def test_spans_whose_parent_is_missing_are_roots(tmp_path: Path) -> None:
    spans = read_spans(_system(tmp_path) / "traces")
    kept = [s for s in spans if s.span_id != "p1"]  # payments' server span not flushed yet
    tree = build_tree(kept, TRACE)
    assert tree is not None
    assert [r.span_id for r in tree.roots] == ["g1", "p3", "p2"]


def test_last_is_the_newest_trace_through_the_gateway(tmp_path: Path) -> None:
    assert last_trace_id(read_spans(_system(tmp_path) / "traces")) == OTHER
    assert last_trace_id([]) is None


def test_the_rendered_tree_shows_service_name_offset_duration_and_key_attributes(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["trace", TRACE, "--var-dir", str(_system(tmp_path))], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"trace {TRACE}" in out
    assert "10.00 ms, 5 spans, services: accounts, gateway, payments" in out
    line = next(x for x in out.splitlines() if "ledger.v1.Ledger/Commit" in x)
    assert "payments" in line
    assert "+4.00 ms" in line
    assert "2.00 ms" in line
    assert "status=201" in next(x for x in out.splitlines() if "payments-0 POST" in x)
    # Tree guides: the commit is a grandchild of the gateway's span.
    assert out.index("POST /api/v1/transfers") < out.index("ledger.v1.Ledger/Prepare")
    assert render_tree(build_tree(read_spans(tmp_path / "traces"), TRACE) or _never()).label


def _never() -> Any:
    raise AssertionError("no tree")


def test_json_output_nests_the_spans(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["trace", TRACE, "--json", "--var-dir", str(_system(tmp_path))]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["trace_id"] == TRACE
    assert document["span_count"] == 5
    assert document["services"] == ["accounts", "gateway", "payments"]
    (root,) = document["roots"]
    assert root["children"][0]["children"][0]["name"] == "ledger.v1.Ledger/Prepare"
    assert root["children"][0]["children"][0]["duration_ms"] == 1.0
    last = CliRunner().invoke(app, ["trace", "--last", "--json", "--var-dir", str(tmp_path)])
    assert json.loads(last.stdout)["trace_id"] == OTHER


def test_bad_input_gets_a_clear_error(tmp_path: Path) -> None:
    runner = CliRunner()
    var = str(_system(tmp_path))
    unknown = runner.invoke(app, ["trace", "c" * 32, "--var-dir", var])
    assert unknown.exit_code == 1
    assert f"No spans of trace {'c' * 32}" in unknown.stderr
    malformed = runner.invoke(app, ["trace", "not-an-id", "--var-dir", var])
    assert malformed.exit_code == 2
    assert "Not a trace id" in malformed.stderr
    neither = runner.invoke(app, ["trace", "--var-dir", var])
    assert neither.exit_code == 2
    both = runner.invoke(app, ["trace", TRACE, "--last", "--var-dir", var])
    assert both.exit_code == 2
    empty = runner.invoke(app, ["trace", TRACE, "--var-dir", str(tmp_path / "none")])
    assert empty.exit_code == 1
    assert "No traces under" in empty.stderr
    help_text = runner.invoke(app, ["trace", "--help"])
    assert help_text.exit_code == 0
    assert "--last" in help_text.output
