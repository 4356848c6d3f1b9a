"""`flotilla bench stacks`: its pure parts (rows, ratios, summary, JSON and table, each
candidate's command line), and each candidate proxy run as its real process in front of a
real upstream (so a broken candidate fails here instead of producing figures)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import import_module
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from flotilla_cli.bench.harness import Children
from flotilla_cli.bench.minimal_app import BENCH_PATH
from flotilla_cli.bench.stacks import CANDIDATES, ROWS, Candidate
from flotilla_cli.bench.stacks.job import asgi_target, parse_args
from flotilla_cli.bench.stacks.report import COLUMNS, build_report, render, summarise, with_ratios
from flotilla_cli.main import app
from flotilla_kit.devservers import free_port

# ---------------------------------------------------------------- rows and command lines


def test_rows_are_the_references_then_the_five_candidates() -> None:
    assert list(ROWS) == [
        "direct", "nginx", "gateway",
        "starlette_httpx", "starlette_aiohttp", "aiohttp_aiohttp", "granian_aiohttp",
        "bare_httptools",
    ]  # fmt: skip


@pytest.mark.parametrize("candidate", CANDIDATES, ids=lambda c: c.key)
def test_candidate_command_line_runs_its_own_module(candidate: Candidate) -> None:
    assert candidate.command(8123, "http://127.0.0.1:9000") == [
        sys.executable, "-m", f"flotilla_cli.bench.stacks.{candidate.key}",
        "--port", "8123", "--upstream", "http://127.0.0.1:9000",
    ]  # fmt: skip


@pytest.mark.parametrize("candidate", CANDIDATES, ids=lambda c: c.key)
def test_candidate_has_help(candidate: Candidate, capsys: pytest.CaptureFixture[str]) -> None:
    module = import_module(f"flotilla_cli.bench.stacks.{candidate.key}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "--upstream" in capsys.readouterr().out


def test_job_arguments_name_the_upstream() -> None:
    args = parse_args("test.", ["--port", "8123", "--upstream", "http://127.0.0.1:9000/"])
    assert (args.port, args.upstream) == (8123, "http://127.0.0.1:9000")
    assert (args.upstream_host, args.upstream_port) == ("127.0.0.1", 9000)


@pytest.mark.parametrize("upstream", ["https://127.0.0.1:9000", "http://127.0.0.1:9000/api", "x"])
def test_job_arguments_refuse_what_is_not_a_plain_http_upstream(upstream: str) -> None:
    with pytest.raises(SystemExit):
        parse_args("test.", ["--port", "1", "--upstream", upstream])


def test_asgi_target_keeps_the_raw_path_and_the_query() -> None:
    scope = {"path": "/a/b c", "raw_path": b"/a/b%20c", "query_string": b"x=1&y=%2F"}
    assert asgi_target(scope) == "/a/b%20c?x=1&y=%2F"
    assert asgi_target({"path": "/a", "query_string": b""}) == "/a"


def test_bench_stacks_is_a_command_of_flotilla_bench() -> None:
    result = CliRunner().invoke(app, ["bench", "stacks", "--help"])
    assert result.exit_code == 0
    for option in ("--duration", "--connections", "--json"):
        assert option in result.output


# ---------------------------------------------------------------- ratios, summary, report


def _result(rps: float, cpu: float | None) -> dict[str, Any]:
    return {"rps": rps, "p50_ms": 2.0, "p99_ms": 6.0, "requests": int(rps * 8), "errors": 0,
            "seconds": 8.0, "cpu_us_per_req": cpu}  # fmt: skip


RESULTS: dict[str, dict[str, Any]] = {
    "direct": _result(20000, None),
    "nginx": _result(16000, 20.0),
    "gateway": _result(15000, 40.0),
    "starlette_httpx": _result(1000, 400.0),
    "aiohttp_aiohttp": _result(4000, 150.0),
    "granian_aiohttp": _result(5000, 120.0),
    "bare_httptools": _result(18000, 24.0),
    "starlette_aiohttp": {"error": "never answered 200"},
}


def test_with_ratios_divides_by_direct_throughput_and_nginx_cpu() -> None:
    rows = with_ratios(RESULTS)
    assert rows["bare_httptools"]["ratio_direct"] == 0.9
    assert rows["bare_httptools"]["cpu_vs_nginx"] == 1.2
    assert rows["direct"]["ratio_direct"] == 1.0
    assert rows["direct"]["cpu_vs_nginx"] is None  # no proxy, no proxy CPU
    assert rows["nginx"]["cpu_vs_nginx"] == 1.0
    assert rows["starlette_aiohttp"] == {"error": "never answered 200"}
    assert RESULTS["bare_httptools"].keys() == _result(1, 1).keys()  # its input is left alone


def test_with_ratios_without_references_has_no_ratios() -> None:
    rows = with_ratios({"bare_httptools": _result(18000, 24.0)})
    assert rows["bare_httptools"]["ratio_direct"] is None
    assert rows["bare_httptools"]["cpu_vs_nginx"] is None


def test_summarise_ranks_by_cpu_per_request() -> None:
    assert summarise(RESULTS) == {
        "cpu_us_per_req": {
            "nginx": 20.0, "bare_httptools": 24.0, "gateway": 40.0, "granian_aiohttp": 120.0,
            "aiohttp_aiohttp": 150.0, "starlette_httpx": 400.0,
        },
        "cpu_ranking": [
            "nginx", "bare_httptools", "gateway", "granian_aiohttp", "aiohttp_aiohttp",
            "starlette_httpx",
        ],
        "cheapest_candidate": "bare_httptools",
        "next_candidate": "granian_aiohttp",
        "next_vs_cheapest_cpu": 5.0,
        "gateway_vs_bare_cpu": 1.667,
    }  # fmt: skip


def test_summarise_without_candidates() -> None:
    summary = summarise({"direct": _result(20000, None), "nginx": _result(16000, 20.0)})
    assert summary["cheapest_candidate"] is None
    assert summary["next_vs_cheapest_cpu"] is None
    assert summary["gateway_vs_bare_cpu"] is None


def _report() -> dict[str, Any]:
    options = {"duration_s": 8.0, "warmup_s": 1.0, "connections": 50, "threads": 2}
    return build_report(options=options, load_generator="wrk", machine={"cpus": 2},
                        results=RESULTS, notes=["starlette_aiohttp failed: x"])  # fmt: skip


def test_report_is_json_with_every_row_described() -> None:
    report = json.loads(json.dumps(_report()))
    assert set(report) == {
        "benchmark", "options", "load_generator", "path", "machine", "rows", "summary", "notes",
    }  # fmt: skip
    assert report["path"] == BENCH_PATH
    assert set(report["rows"]) == set(RESULTS)
    row = report["rows"]["granian_aiohttp"]
    assert set(row) == {
        "stack", "server", "client", "rps", "p50_ms", "p99_ms", "requests", "errors", "seconds",
        "cpu_us_per_req", "ratio_direct", "cpu_vs_nginx",
    }  # fmt: skip
    assert (row["stack"], row["client"]) == ("granian + aiohttp", "aiohttp")
    assert report["rows"]["starlette_aiohttp"]["error"] == "never answered 200"
    assert report["summary"]["cheapest_candidate"] == "bare_httptools"


def test_table_shows_every_column_and_row_in_order() -> None:
    console = Console(record=True, width=250, color_system=None)
    render(_report(), console)
    text = console.export_text()
    header = next(line for line in text.splitlines() if "stack" in line and "req/s" in line)
    positions = [header.index(column) for column in COLUMNS]
    assert positions == sorted(positions)
    bare = next(line for line in text.splitlines() if line.startswith("│ bare httptools"))
    for cell in ("18,000", "24.0", "0.90x", "1.20x"):
        assert cell in bare
    failed = next(line for line in text.splitlines() if "Starlette + aiohttp" in line)
    assert "failed" in failed
    first_cells = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    assert first_cells == [row.stack for row in ROWS.values()]
    assert "bare httptools (24 µs); the next, granian + aiohttp, needs 5.0x that (120 µs)" in text
    assert "machine: {'cpus': 2}" in text


# ---------------------------------------------------------------- each candidate, for real

ECHO_STATUS = 203  # not 200: a candidate that makes up its own status fails
ECHO_TYPE = "application/vnd.flotilla.echo+json"


class _Echo(ThreadingHTTPServer):
    """An HTTP/1.1 keep-alive upstream that answers with what it was sent, and counts the
    connections it accepted (a candidate with a pool reuses one for sequential requests)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.connections: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                server.connections.append(1)

            def do_GET(self) -> None:
                body = json.dumps(
                    {"path": self.path, "authorization": self.headers.get("Authorization")}
                ).encode()
                self.send_response(ECHO_STATUS)
                self.send_header("Content-Type", ECHO_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def echo() -> Iterator[_Echo]:
    server = _Echo()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _wait_listening(port: int, alive: Any, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert alive(), "the candidate exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            time.sleep(0.02)  # the poll's interval, within the deadline
        else:
            return
    pytest.fail(f"nothing listened on {port} within {deadline_s} s")


@pytest.mark.parametrize("candidate", CANDIDATES, ids=lambda c: c.key)
def test_candidate_forwards_and_answers_with_the_upstreams_reply(
    candidate: Candidate, echo: _Echo, tmp_path: Path
) -> None:
    port = free_port()
    with Children(tmp_path) as children:
        child = children.start(candidate.key, candidate.command(port, echo.url))
        try:
            _wait_listening(port, lambda: child.process.poll() is None)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for n in range(3):
                    target = f"{BENCH_PATH}?n={n}"
                    response = client.get(target, headers={"Authorization": f"Bearer t{n}"})
                    assert response.status_code == ECHO_STATUS
                    assert response.headers["content-type"] == ECHO_TYPE
                    assert response.json() == {"path": target, "authorization": f"Bearer t{n}"}
                refused = client.post(BENCH_PATH)
        except BaseException:
            print(children.tail(child))  # shown by pytest when the test fails
            raise
    assert refused.status_code == 405  # GET is the job; nothing else is forwarded
    assert len(echo.connections) == 1  # one pooled connection served all three
