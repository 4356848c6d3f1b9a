"""Microbench: what tracing costs the gateway per request, measured side by side.

- `record`: what the request path does (`SpanLog.record`, one tuple appended);
- `record + flush`: the same plus the span made and queued for export later (off the
  request path, but still this process's CPU);
- `sdk span`: the SDK's `start_span` + attributes + `end`, what an instrumentation does.

Spans go to a JSON lines file in a temporary folder. Prints a table; asserts nothing.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from opentelemetry.trace import SpanKind

from flotilla_gateway.spans import SpanLog
from flotilla_kit.tracing import JsonLinesSpanExporter, Tracing

N = 2_000
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE}-00f067aa0ba902b7-01".encode()
REQUEST = (TRACE, "1111111111111111", CALLER, b"GET", "/api/v1/accounts/a",
           "/api/v1/accounts/{id}", 200, "x-0", "r")  # fmt: skip


def _per_request_us(run: object, n: int = N) -> float:
    best = float("inf")
    for _ in range(15):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best / n * 1e6


async def _measure() -> None:
    # In a running loop, as in the gateway: `record` schedules one flush per batch.
    with tempfile.TemporaryDirectory() as folder:
        tracing = Tracing(
            service="gateway",
            instance="bench",
            exporter=JsonLinesSpanExporter(Path(folder) / "bench.jsonl"),
        )
        spans = SpanLog(tracing, flush_after_s=3600, batch=10**9)  # flushed by hand

        def record_only() -> None:
            now = time.perf_counter_ns()
            for _ in range(N):
                spans.record(now, 1000, *REQUEST)
            spans.discard()

        def record_and_flush() -> None:
            now = time.perf_counter_ns()
            for _ in range(N):
                spans.record(now, 1000, *REQUEST)
            spans.flush()

        tracer = tracing.tracer

        def sdk() -> None:
            for _ in range(N):
                span = tracer.start_span("GET /api/v1/accounts/{id}", kind=SpanKind.SERVER)
                span.set_attribute("http.request.method", "GET")
                span.set_attribute("url.path", "/api/v1/accounts/a")
                span.set_attribute("http.route", "/api/v1/accounts/{id}")
                span.set_attribute("http.response.status_code", 200)
                span.set_attribute("http.request.id", "r")
                span.end()

        rows = [
            ("record (request path)", _per_request_us(record_only)),
            ("record + flush (made, queued)", _per_request_us(record_and_flush)),
            ("sdk start_span + end", _per_request_us(sdk)),
        ]
        tracing.shutdown()
    print(f"{'what':32} {'us per request':>15}")
    for name, value in rows:
        print(f"{name:32} {value:15.2f}")


def main() -> None:
    asyncio.run(_measure())


if __name__ == "__main__":
    main()
