"""The run of `flotilla bench stacks`: one upstream (the minimal ASGI app under uvicorn),
then each row's proxy started as its own process, checked, warmed up, loaded with wrk and
stopped, one after the other, so that no two proxies share the machine while measured.

The machinery is the bench harness's (`flotilla_cli.bench.harness`: processes, wrk,
readiness, measurement, the gateway's and nginx's set-up), shared with `flotilla bench
gateway`. Its `measure` reads the CPU time of one
proxy process; granian serves from a worker process under its supervisor, so here the
CPU of the proxy's descendants is added (`_measure_tree`).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console

from flotilla_cli.bench.harness import (
    Children,
    LoadOptions,
    LoadResult,
    auth_endpoints,
    ensure_tool,
    gateway_process,
    load_generator,
    measure,
    nginx_config,
    run_load,
    start_uvicorn,
    wait_ok,
)
from flotilla_cli.bench.minimal_app import BENCH_PATH
from flotilla_cli.bench.stacks.report import build_report
from flotilla_cli.bench.stacks.rows import ROWS, Candidate, Row
from flotilla_cli.launcher.machine import machine
from flotilla_kit.devservers import free_port
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths, ensure_dev_pki

__all__ = ["run_stacks_bench"]

# What can go wrong with one row (a proxy that does not start or answer, wrk failing)
# without stopping the others.
_ROW_FAILURES = (RuntimeError, ValueError, OSError, subprocess.SubprocessError, psutil.Error)


def _running(pid: int) -> bool:
    """Whether the process is alive (a dead child not yet reaped is a zombie, not alive)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cpu_s(processes: list[psutil.Process]) -> dict[int, float]:
    seconds: dict[int, float] = {}
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            seconds[process.pid] = times.user + times.system
    return seconds


def _measure_tree(
    url: str, token: str, options: LoadOptions, pid: int, app_pid: int
) -> tuple[LoadResult, int]:
    """The harness's `measure` (warm-up, then one run: the CPU of the proxy, of the app,
    of wrk, the machine's busy cores), with the CPU time of the proxy's descendant
    processes (granian's worker) added to the proxy's; and how many processes it has.

    The descendants are read just before and after `measure`, whose own readings are
    taken around the run: the two windows differ by a few psutil calls."""
    if options.warmup_s > 0:
        run_load(url, token, options, options.warmup_s)
    descendants = psutil.Process(pid).children(recursive=True)
    before = _cpu_s(descendants)
    result = measure(url, token, replace(options, warmup_s=0), pid, app_pid)
    after = _cpu_s(descendants)
    if after.keys() != before.keys():
        raise RuntimeError(f"a process of the proxy exited while measured ({len(after)} left)")
    extra_s = sum(after[key] - before[key] for key in after)
    if extra_s and result.cpu_us_per_req is not None and result.requests:
        cpu = result.cpu_us_per_req + extra_s * 1e6 / result.requests
        result = replace(result, cpu_us_per_req=round(cpu, 1))
    return result, 1 + len(after)


class _Session:
    """What every row shares: the processes, the upstream, the token, the PKI nginx's
    configuration wants (its TLS listener is not measured), the gateway's key server."""

    def __init__(self, stack: contextlib.ExitStack, options: LoadOptions, console: Console):
        self.options, self.console = options, console
        self.tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flotilla-stacks-")))
        self.children = stack.enter_context(Children(self.tmp))
        minter = TokenMinter()
        self.token = minter.mint("bench-user", ["customer"], ttl_s=24 * 3600)
        self.auth_urls = stack.enter_context(auth_endpoints(minter))
        self.pki: CertificatePaths = ensure_dev_pki(self.tmp / "tls", ["gateway"])["gateway"]
        self.upstream = start_uvicorn(
            self.children, "upstream", "flotilla_cli.bench.minimal_app:minimal_app",
            "--lifespan", "off",
        )  # fmt: skip

    @contextlib.contextmanager
    def _process(self, name: str, command: Callable[[int], list[str]]) -> Iterator[tuple[str, int]]:
        """A proxy process listening on a free port: (base URL, pid); stopped on exit, and
        its log's tail added to what went wrong while it ran."""
        port = free_port()
        child = self.children.start(name, command(port))
        try:
            yield f"http://127.0.0.1:{port}", child.process.pid
        except _ROW_FAILURES as error:
            log = self.children.tail(child)
            raise RuntimeError(f"{error}\n--- {name}'s log:\n{log}") from error
        finally:
            self.children.stop(child)

    def _nginx(self, port: int) -> list[str]:
        config = self.tmp / "nginx.conf"
        upstream_port = httpx.URL(self.upstream).port or 80
        # The TLS listener nginx_config also writes (on a port of its own) is not measured.
        config.write_text(nginx_config(self.tmp, upstream_port, port, free_port(), self.pki))
        return ["nginx", "-p", str(self.tmp), "-c", str(config), "-e", str(self.tmp / "nginx.log")]

    @contextlib.contextmanager
    def proxy(self, row: Row) -> Iterator[tuple[str, int | None]]:
        """The row's proxy, started: (base URL, pid); no pid for the direct row."""
        if row.key == "direct":
            yield self.upstream, None
        elif row.key == "gateway":
            with gateway_process(self.children, self.tmp, self.upstream, self.auth_urls) as started:
                yield started
        elif row.key == "nginx":
            with self._process("nginx", self._nginx) as started:
                yield started
        else:
            assert isinstance(row, Candidate)
            upstream = self.upstream
            with self._process(row.key, lambda port: row.command(port, upstream)) as started:
                yield started

    def measure(self, row: Row, index: int) -> dict[str, Any]:
        options = self.options
        prefix = f"[{index}/{len(ROWS)}] {row.stack}"
        with self.console.status(f"{prefix}: starting") as status, self.proxy(row) as (base, pid):
            url = base + BENCH_PATH
            wait_ok(url, self.token, self.pki.ca, lambda: pid is None or _running(pid))
            status.update(
                f"{prefix}: {options.warmup_s:g} s warm-up, {options.duration_s:g} s measured"
            )
            app_pid = self.children.pid("upstream")
            if pid is None:
                return asdict(measure(url, self.token, options, None, app_pid))
            result, processes = _measure_tree(url, self.token, options, pid, app_pid)
            return {**asdict(result), "proxy_processes": processes}


def run_stacks_bench(options: LoadOptions, console: Console) -> dict[str, Any]:
    """Every row in turn; a row that fails is reported as failed and the others still run."""
    ensure_tool("wrk", "wrk", console)
    nginx = ensure_tool("nginx", "nginx", console)
    results: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        session = _Session(stack, options, console)
        for index, row in enumerate(ROWS.values(), start=1):
            if row.key == "nginx" and not nginx:
                notes.append("nginx missing: no reference row, no CPU vs nginx")
                continue
            try:
                results[row.key] = session.measure(row, index)
            except _ROW_FAILURES as error:
                results[row.key] = {"error": str(error)}
                notes.append(f"{row.key} failed: {error}")
                console.print(f"[red]{row.stack}: failed[/]", highlight=False)
                continue
            done = results[row.key]
            cpu = done.get("cpu_us_per_req")
            console.print(
                f"{row.stack}: {done['rps']:,.0f} req/s, p50 {done['p50_ms']:g} ms"
                + ("" if cpu is None else f", {cpu:g} µs CPU per request"),
                highlight=False,
            )
    return build_report(
        options=asdict(options), load_generator=load_generator(), machine=machine(),
        results=results, notes=notes,
    )  # fmt: skip
