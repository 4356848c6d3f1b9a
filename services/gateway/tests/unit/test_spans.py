"""The gateway's hand-made spans: what `record` keeps becomes, at `flush`, the same span
the SDK would export (ids, the caller as parent, wall-clock timings, status), written by
the kit's exporter."""

from __future__ import annotations

import json
import time
from pathlib import Path

from flotilla_gateway.spans import SpanLog
from flotilla_kit.tracing import JsonLinesSpanExporter, Tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE}-00f067aa0ba902b7-01".encode()


def _tracing(path: Path, ratio: float = 1.0) -> Tracing:
    return Tracing(
        service="gateway",
        instance="gateway-0",
        exporter=JsonLinesSpanExporter(path),
        sample_ratio=ratio,
    )


def test_recorded_requests_become_server_spans(tmp_path: Path) -> None:
    path = tmp_path / "gateway-0.jsonl"
    tracing = _tracing(path)
    spans = SpanLog(tracing)
    before = time.time_ns()
    started = time.perf_counter_ns()
    spans.record(
        started, 2_000_000, TRACE, "1111111111111111", CALLER, b"POST", "/api/v1/transfers",
        "/api/v1/transfers", 201, "payments-0", "req-1",
    )  # fmt: skip
    spans.record(
        started, 1_000_000, "5" * 32, "2222222222222222", None, b"GET", "/api/v1/accounts/x",
        "/api/v1/accounts/{account_id}", 503, None, "req-2",
    )  # fmt: skip
    tracing.shutdown()
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert (first["trace_id"], first["span_id"]) == (TRACE, "1111111111111111")
    assert first["parent_span_id"] == "00f067aa0ba902b7"  # the caller's span
    assert (first["name"], first["kind"], first["service"]) == (
        "POST /api/v1/transfers", "SERVER", "gateway",
    )  # fmt: skip
    assert first["attributes"] == {
        "http.request.method": "POST",
        "url.path": "/api/v1/transfers",
        "http.route": "/api/v1/transfers",
        "http.response.status_code": 201,
        "http.request.id": "req-1",
        "flotilla.upstream.instance": "payments-0",
    }
    assert first["end_unix_nano"] - first["start_unix_nano"] == 2_000_000
    assert before - 5_000_000 <= first["start_unix_nano"] <= time.time_ns()
    assert first["status"] == "UNSET"
    assert second["parent_span_id"] is None  # a trace the gateway started
    assert second["status"] == "ERROR"
    assert second["name"] == "GET /api/v1/accounts/{account_id}"
    assert "flotilla.upstream.instance" not in second["attributes"]


def test_the_sample_ratio_decides_for_traces_the_gateway_starts(tmp_path: Path) -> None:
    assert SpanLog(_tracing(tmp_path / "a.jsonl")).sample() is True
    never = SpanLog(_tracing(tmp_path / "b.jsonl", ratio=0.0))
    assert not any(never.sample() for _ in range(100))
    half = SpanLog(_tracing(tmp_path / "c.jsonl", ratio=0.5))
    assert 20 < sum(half.sample() for _ in range(200)) < 180
