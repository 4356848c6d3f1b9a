"""`flotilla bench gateway`: what the gateway costs per request, measured in one run with an
external load generator (wrk) over loopback, against the same request sent

- (a) directly to a FastAPI app and (b) through the gateway to it,
- (c) directly to a minimal ASGI app and (d) through the gateway to it,
- (e) through nginx to the minimal app, the reference reverse proxy,

plus TLS rows: the gateway and nginx terminating TLS in front of the minimal app, and
rows at one connection (an unloaded system), where the latency a proxy adds is its own:
at 50 connections every case is CPU-bound and p50 is mostly queueing (connections /
throughput). Each row also says what the upstream app and the load generator spent per
request, and how many of the machine's cores were busy: on two cores, the load
generator, the proxy and the app share them.

The gateway runs as its real process (`python -m flotilla_gateway serve`) with token
checks, RBAC, rate limits (set very high), metrics, access log and tracing on, on plain
HTTP; the benchmarked route is `GET /api/v1/auth/me` (AUTHENTICATED, unsharded service),
whose `auth` instance in the topology file is the app under test. Tokens are minted by a
`TokenMinter` whose JWKS a local HTTP server publishes.

A benchmark, not a test: it prints a table, writes JSON, says what machine it ran on, and
asserts nothing about speed (targets are printed next to the results).
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from flotilla_cli.bench.figures import cell, ratio
from flotilla_cli.bench.harness import (
    Children,
    LoadOptions,
    auth_endpoints,
    ensure_tool,
    gateway_process,
    load_generator,
    measure,
    nginx_config,
    start_uvicorn,
    wait_ok,
)
from flotilla_cli.bench.minimal_app import BENCH_PATH
from flotilla_cli.launcher.machine import machine
from flotilla_kit.devservers import free_port
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths, ensure_dev_pki

__all__ = [
    "CASES",
    "TARGETS",
    "render",
    "run_gateway_bench",
    "summarise",
    "target_met",
]

# Case key -> label in the table.
CASES: dict[str, str] = {
    "fastapi_direct": "(a) FastAPI, direct",
    "fastapi_gateway": "(b) gateway -> FastAPI",
    "minimal_direct": "(c) minimal, direct",
    "minimal_gateway": "(d) gateway -> minimal",
    "minimal_nginx": "(e) nginx -> minimal",
    "minimal_gateway_tls": "gateway TLS -> minimal",
    "minimal_nginx_tls": "nginx TLS -> minimal",
    "minimal_direct_1c": "(c) at 1 connection",
    "minimal_gateway_1c": "(d) at 1 connection",
    "minimal_nginx_1c": "(e) at 1 connection",
}
# Cases measured with a single connection (one wrk thread).
_ONE_CONNECTION = frozenset({"minimal_direct_1c", "minimal_gateway_1c", "minimal_nginx_1c"})

# Metric -> (comparison, bound): printed next to the results, never asserted. With the
# access log, spans at the default sampling, rate limits and RBAC on.
TARGETS: dict[str, tuple[str, float]] = {
    "ratio_minimal": (">=", 0.7),
    "ratio_fastapi": (">=", 0.95),
    "added_p50_ms": ("<=", 1.0),
    "added_p50_ms_unloaded": ("<=", 0.3),
    "cpu_vs_nginx": ("<=", 2.0),
}


def summarise(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ratios the targets are about, from the cases' results (None where one is missing)."""

    def get(case: str, key: str) -> float | None:
        value = cases.get(case, {}).get(key)
        return None if value is None else float(value)

    def added(proxied: str, direct: str) -> float | None:
        through, straight = get(proxied, "p50_ms"), get(direct, "p50_ms")
        return None if through is None or straight is None else round(through - straight, 3)

    gateway_cpu = get("minimal_gateway", "cpu_us_per_req")
    nginx_cpu = get("minimal_nginx", "cpu_us_per_req")
    direct_rps = get("minimal_direct", "rps")
    return {
        "ratio_fastapi": ratio(
            get("fastapi_gateway", "rps"), get("fastapi_direct", "rps"), digits=3
        ),
        "ratio_minimal": ratio(get("minimal_gateway", "rps"), direct_rps, digits=3),
        "ratio_minimal_nginx": ratio(get("minimal_nginx", "rps"), direct_rps, digits=3),
        "added_p50_ms": added("minimal_gateway", "minimal_direct"),
        "added_p50_ms_nginx": added("minimal_nginx", "minimal_direct"),
        "added_p50_ms_unloaded": added("minimal_gateway_1c", "minimal_direct_1c"),
        "added_p50_ms_unloaded_nginx": added("minimal_nginx_1c", "minimal_direct_1c"),
        "cpu_us_per_req": {"gateway": gateway_cpu, "nginx": nginx_cpu},
        "cpu_vs_nginx": ratio(gateway_cpu, nginx_cpu, digits=3),
    }


def target_met(metric: str, value: float | None) -> bool | None:
    """Whether `value` meets the metric's target; None when there is no value or target."""
    if value is None or metric not in TARGETS:
        return None
    comparison, bound = TARGETS[metric]
    return value >= bound if comparison == ">=" else value <= bound


# ---------------------------------------------------------------- the run


@dataclass
class _Run:
    options: LoadOptions
    console: Console
    children: Children
    tmp: Path
    token: str
    pki: CertificatePaths
    auth_urls: tuple[str, str]
    cases: dict[str, dict[str, Any]]

    def case(self, key: str, base: str, pid: int | None = None, app: str = "minimal") -> None:
        url = base + BENCH_PATH
        options = self.options
        if key in _ONE_CONNECTION:
            options = replace(options, connections=1, threads=1)
        with self.console.status(
            f"{CASES[key]}: {options.warmup_s:g} s warm-up, {options.duration_s:g} s measured"
        ):
            alive = (lambda: psutil.pid_exists(pid)) if pid is not None else (lambda: True)
            wait_ok(url, self.token, self.pki.ca, alive)
            measured = measure(url, self.token, options, pid, self.children.pid(app))
            self.cases[key] = asdict(measured)

    def through_gateway(
        self, keys: tuple[str, ...], upstream: str, tls: bool = False, app: str = "minimal"
    ) -> None:
        pki = self.pki if tls else None
        with gateway_process(self.children, self.tmp, upstream, self.auth_urls, pki) as (base, pid):
            for key in keys:
                self.case(key, base, pid, app)


def _start_nginx(run: _Run, minimal: str) -> tuple[str, str, int]:
    """nginx in front of the minimal app: (http base, https base, pid)."""
    port, tls_port = free_port(), free_port()
    config = run.tmp / "nginx.conf"
    upstream_port = httpx.URL(minimal).port or 80
    config.write_text(nginx_config(run.tmp, upstream_port, port, tls_port, run.pki))
    child = run.children.start(
        "nginx", ["nginx", "-p", str(run.tmp), "-c", str(config), "-e", str(run.tmp / "nginx.log")]
    )
    return f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls_port}", child.process.pid


def _run_cases(run: _Run, nginx: bool) -> None:
    fastapi = start_uvicorn(run.children, "fastapi", "flotilla_cli.bench.minimal_app:fastapi_app")
    minimal = start_uvicorn(run.children, "minimal", "flotilla_cli.bench.minimal_app:minimal_app",
                       "--lifespan", "off")  # fmt: skip
    run.case("fastapi_direct", fastapi, app="fastapi")
    run.through_gateway(("fastapi_gateway",), fastapi, app="fastapi")
    run.case("minimal_direct", minimal)
    run.case("minimal_direct_1c", minimal)
    run.through_gateway(("minimal_gateway", "minimal_gateway_1c"), minimal)
    if nginx:
        plain, tls, pid = _start_nginx(run, minimal)
        run.case("minimal_nginx", plain, pid)
        run.case("minimal_nginx_1c", plain, pid)
    run.through_gateway(("minimal_gateway_tls",), minimal, tls=True)
    if nginx:
        run.case("minimal_nginx_tls", tls, pid)


def run_gateway_bench(options: LoadOptions, console: Console) -> dict[str, Any]:
    ensure_tool("wrk", "wrk", console)
    nginx = ensure_tool("nginx", "nginx", console)
    minter = TokenMinter()
    token = minter.mint("bench-user", ["customer"], ttl_s=24 * 3600)
    cases: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flotilla-bench-gw-")))
        children = stack.enter_context(Children(tmp))
        auth_urls = stack.enter_context(auth_endpoints(minter))
        pki = ensure_dev_pki(tmp / "tls", ["gateway"])["gateway"]
        run = _Run(options, console, children, tmp, token, pki, auth_urls, cases)
        _run_cases(run, nginx)
    return {
        "benchmark": "gateway overhead",
        "options": asdict(options),
        "load_generator": load_generator(),
        "path": BENCH_PATH,
        "machine": machine(),
        "cases": cases,
        **summarise(cases),
        "targets": {metric: f"{op} {bound}" for metric, (op, bound) in TARGETS.items()},
        "notes": [] if nginx else ["nginx missing: no reference rows"],
    }


# ---------------------------------------------------------------- output


# The same measure taken with nginx in the gateway's place, where there is one.
_NGINX_FIGURE = {
    "ratio_minimal": "ratio_minimal_nginx",
    "added_p50_ms": "added_p50_ms_nginx",
    "added_p50_ms_unloaded": "added_p50_ms_unloaded_nginx",
}


def _targets_table(report: dict[str, Any]) -> Table:
    table = Table(title="Targets (printed, not asserted)", title_justify="left")
    for column in ("metric", "value", "target", "met", "nginx in its place"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, (comparison, bound) in TARGETS.items():
        met = target_met(metric, report.get(metric))
        verdict = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[met]
        nginx = _NGINX_FIGURE.get(metric)
        table.add_row(
            metric, cell(report.get(metric)), f"{comparison} {bound}", verdict,
            cell(report.get(nginx)) if nginx else "-",
        )  # fmt: skip
    return table


def render(report: dict[str, Any], console: Console) -> None:
    options = report["options"]
    table = Table(
        title=f"Gateway overhead: GET {report['path']} over loopback, {report['load_generator']} "
        f"({options['threads']} threads, {options['connections']} connections, "
        f"{options['duration_s']:g} s each). proxy, app, wrk: CPU µs per request of each "
        "process; busy: cores in use, of the machine's",
        title_justify="left",
    )
    columns = ("case", "req/s", "p50 ms", "p99 ms", "err", "proxy", "app", "wrk", "busy")
    for column in columns:
        table.add_column(column, justify="left" if column == "case" else "right")
    for key, label in CASES.items():
        case = report["cases"].get(key)
        if case is None:
            continue
        table.add_row(
            label, f"{case['rps']:,.0f}", cell(case["p50_ms"]), cell(case["p99_ms"]),
            str(case["errors"]), cell(case["cpu_us_per_req"]),
            cell(case.get("app_cpu_us_per_req")), cell(case.get("load_cpu_us_per_req")),
            cell(case.get("busy_cores")),
        )  # fmt: skip
    console.print(table)
    console.print(_targets_table(report))
    for note in report["notes"]:
        console.print(f"[yellow]{note}[/]")
    console.print(f"machine: {report['machine']}", highlight=False)
