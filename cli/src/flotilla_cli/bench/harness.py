"""What several benchmarks share: the wrk load and its numbers, the processes a bench starts
(all stopped on exit), an upstream app under uvicorn, a real gateway process in front of it,
a local JWKS for its tokens, nginx as the reference proxy, and the CPU time a measured run
costs each process.

`flotilla bench gateway` and `flotilla bench stacks` measure with `measure` (wrk over
loopback, or an asyncio fallback when wrk is missing); `flotilla bench inventory` starts its
service with `Children` and checks its tokens against `auth_endpoints`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
from rich.console import Console

from flotilla_kit.devservers import die_with_parent, free_port
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths
from flotilla_kit.topology import Instance, Topology

__all__ = [
    "Child",
    "Children",
    "LoadOptions",
    "LoadResult",
    "auth_endpoints",
    "ensure_tool",
    "gateway_process",
    "load_generator",
    "measure",
    "nginx_config",
    "parse_wrk",
    "run_load",
    "start_uvicorn",
    "wait_ok",
]

_HIGH_LIMIT = "1000000000"
_READY_TIMEOUT_S = 30.0
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class LoadOptions:
    """How a measured run loads its target (wrk's -d, -c, -t), per case."""

    duration_s: float = 10.0  # per case
    warmup_s: float = 1.0  # per case, not counted
    connections: int = 50
    threads: int = 2


@dataclass(frozen=True)
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx/3xx responses plus socket errors
    seconds: float
    cpu_us_per_req: float | None = None  # of the proxy (gateway or nginx), when measured
    app_cpu_us_per_req: float | None = None  # of the upstream app
    load_cpu_us_per_req: float | None = None  # of the load generator (wrk)
    busy_cores: float | None = None  # of the whole machine, during the run

    def _per_request(self, cpu_s: float | None) -> float | None:
        return (
            _round(cpu_s * 1e6 / self.requests, 1) if cpu_s is not None and self.requests else None
        )

    def with_cpu(
        self,
        cpu_s: float | None,
        *,
        app_s: float | None = None,
        load_s: float | None = None,
        busy_cores: float | None = None,
    ) -> LoadResult:
        """The same result with CPU seconds spent during it, as µs per request."""
        return LoadResult(
            **{
                **asdict(self),
                "cpu_us_per_req": self._per_request(cpu_s),
                "app_cpu_us_per_req": self._per_request(app_s),
                "load_cpu_us_per_req": self._per_request(load_s),
                "busy_cores": _round(busy_cores, 2),
            }
        )


# ---------------------------------------------------------------- pure helpers


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _duration_ms(text: str) -> float:
    """wrk's `1.23ms`, `456.00us`, `1.02s` in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def parse_wrk(output: str) -> LoadResult:
    """The numbers of a `wrk --latency` run; ValueError when the output lacks them."""
    p50 = re.search(r"^\s*50(?:\.0+)?%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s*99(?:\.0+)?%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if p50 is None or p99 is None or total is None or rps is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non_2xx[1]) if non_2xx else 0
    errors += sum(int(n) for n in sockets.groups()) if sockets else 0
    return LoadResult(
        rps=round(float(rps[1]), 1),
        p50_ms=round(_duration_ms(p50[1]), 3),
        p99_ms=round(_duration_ms(p99[1]), 3),
        requests=int(total[1]),
        errors=errors,
        seconds=round(_duration_ms(total[2] + total[3]) / 1000, 2),
    )


def nginx_config(tmp: Path, upstream_port: int, port: int, tls_port: int,
                 pki: CertificatePaths) -> str:  # fmt: skip
    """One process, no access log, keep-alive to the upstream: a fair single-core reference."""
    proxy = (
        "location / { proxy_pass http://app; proxy_http_version 1.1; "
        'proxy_set_header Connection ""; }'
    )
    temp = " ".join(
        f"{kind}_temp_path {tmp / ('nginx-' + kind)};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {tmp / "nginx.pid"};
error_log {tmp / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {temp}
  upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 32; keepalive_timeout 4s; }}
  server {{ listen 127.0.0.1:{port}; {proxy} }}
  server {{
    listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {pki.cert};
    ssl_certificate_key {pki.key};
    {proxy}
  }}
}}
"""


# ---------------------------------------------------------------- processes


@dataclass(frozen=True)
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]


class Children:
    """Every process the bench starts; all stopped on exit, whatever happens."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._children: list[Child] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *_: object) -> None:
        for child in reversed(self._children):
            self.stop(child)

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Child:
        log = (self._tmp / f"{name}.log").open("wb")
        process = subprocess.Popen(  # noqa: S603 - our own command lines
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
            preexec_fn=die_with_parent,  # noqa: PLW1509 - plain ctypes call, no threads
        )
        child = Child(name, process, log)
        self._children.append(child)
        return child

    def stop(self, child: Child) -> None:
        if child not in self._children:
            return
        self._children.remove(child)
        with contextlib.suppress(ProcessLookupError):
            # SIGINT: stop now (SIGTERM would make a gateway drain first).
            child.process.send_signal(signal.SIGINT)
        try:
            child.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        child.log.close()

    def pid(self, name: str) -> int:
        """The pid of the child started as `name`."""
        return next(child.process.pid for child in self._children if child.name == name)

    def tail(self, child: Child) -> str:
        path = self._tmp / f"{child.name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def start_uvicorn(children: Children, name: str, app: str, *extra: str) -> str:
    port = free_port()
    children.start(
        name,
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--workers", "1", "--no-access-log",
         "--log-level", "warning", *extra],
    )  # fmt: skip
    return f"http://127.0.0.1:{port}"


def _gateway_env(tmp: Path, upstream: str, auth_urls: tuple[str, str], port: int,
                 pki: CertificatePaths | None) -> dict[str, str]:  # fmt: skip
    topology = tmp / f"topology-{port}.json"
    Topology(services={"auth": [Instance(name="auth-bench", url=upstream)]}).write(topology)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    env |= {
        "FLOTILLA_PROFILE": "dev",
        "FLOTILLA_HOST": "127.0.0.1",
        "FLOTILLA_PORT": str(port),
        "FLOTILLA_VAR_DIR": str(tmp),
        "FLOTILLA_LOG_LEVEL": "info",  # one access line per request
        "FLOTILLA_TOPOLOGY_FILE": str(topology),
        "FLOTILLA_JWKS_URLS": json.dumps([auth_urls[0]]),
        "FLOTILLA_REVOCATION_URLS": json.dumps([auth_urls[1]]),
        "FLOTILLA_RATE_LIMIT_ENABLED": "true",
        "FLOTILLA_RATE_LIMIT_IDENTITY_RPS": _HIGH_LIMIT,
        "FLOTILLA_RATE_LIMIT_IDENTITY_BURST": _HIGH_LIMIT,
        "FLOTILLA_RATE_LIMIT_IP_RPS": _HIGH_LIMIT,
        "FLOTILLA_RATE_LIMIT_IP_BURST": _HIGH_LIMIT,
    }
    if pki is not None:
        env |= {
            "FLOTILLA_TLS_CERT_FILE": str(pki.cert),
            "FLOTILLA_TLS_KEY_FILE": str(pki.key),
            "FLOTILLA_TLS_CA_FILE": str(pki.ca),
        }
    return env


@contextlib.contextmanager
def gateway_process(children: Children, tmp: Path, upstream: str, auth_urls: tuple[str, str],
             pki: CertificatePaths | None = None) -> Iterator[tuple[str, int]]:  # fmt: skip
    """A gateway process routing the bench path to `upstream`: (base URL, pid)."""
    port = free_port()
    env = _gateway_env(tmp, upstream, auth_urls, port, pki)
    child = children.start(f"gateway-{port}", [sys.executable, "-m", "flotilla_gateway", "serve"],
                           env)  # fmt: skip
    try:
        yield f"{'https' if pki else 'http'}://127.0.0.1:{port}", child.process.pid
    finally:
        children.stop(child)


@contextlib.contextmanager
def auth_endpoints(minter: TokenMinter) -> Iterator[tuple[str, str]]:
    """A local HTTP server publishing the minter's JWKS and an empty revocation list."""
    bodies = {
        "/jwks.json": json.dumps(minter.jwks).encode(),
        "/revocations": json.dumps({"sessions": []}).encode(),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield base + "/jwks.json", base + "/revocations"
    finally:
        server.shutdown()
        server.server_close()


def wait_ok(url: str, token: str, ca: Path, alive: Callable[[], bool]) -> None:
    """Until the bench request through `url` answers 200 (the gateway has found its
    upstream healthy and fetched the keys), or RuntimeError."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    last = "no answer"
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=2) as client:
        while time.monotonic() < deadline and alive():
            try:
                response = client.get(url, headers={"Authorization": f"Bearer {token}"})
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as error:
                last = repr(error)
            time.sleep(0.2)
    raise RuntimeError(f"{url} never answered 200: {last}")


# ---------------------------------------------------------------- load generators


def _wrk(url: str, token: str, options: LoadOptions, duration_s: float) -> LoadResult:
    threads = min(options.threads, options.connections)
    command = [
        "wrk", f"-t{threads}", f"-c{options.connections}", f"-d{max(1, round(duration_s))}s",
        "--latency", "--timeout", "10s", "-H", f"Authorization: Bearer {token}", url,
    ]  # fmt: skip
    result = subprocess.run(  # noqa: S603 - wrk, our arguments
        command, capture_output=True, text=True, check=False, timeout=duration_s + 60
    )
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {result.stderr or result.stdout}")
    return parse_wrk(result.stdout)


async def _fallback_connection(
    url: httpx.URL, request: bytes, tls: ssl.SSLContext | None, stop_at: float,
    latencies: list[float], counts: list[int],
) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(url.host, url.port, ssl=tls)
    try:
        while (started := time.monotonic()) < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            await reader.readexactly(int(length[1]) if length else 0)
            latencies.append(time.monotonic() - started)
            counts[0 if head.startswith((b"HTTP/1.1 2", b"HTTP/1.1 3")) else 1] += 1
    finally:
        writer.close()


async def _fallback(url: str, token: str, options: LoadOptions, duration_s: float) -> LoadResult:
    """An asyncio HTTP/1.1 keep-alive load generator, used only when wrk is missing: it runs
    in this process and saturates long before wrk does."""
    target = httpx.URL(url)
    tls = ssl.create_default_context() if target.scheme == "https" else None
    if tls is not None:
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    request = (
        f"GET {target.raw_path.decode()} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    counts = [0, 0]  # ok, not ok
    started = time.monotonic()
    results = await asyncio.gather(
        *(_fallback_connection(target, request, tls, started + duration_s, latencies, counts)
          for _ in range(options.connections)),
        return_exceptions=True,
    )  # fmt: skip
    seconds = time.monotonic() - started
    ordered = sorted(latencies)
    if not ordered:
        raise RuntimeError(f"no request answered: {results}")
    return LoadResult(
        rps=round(len(ordered) / seconds, 1),
        p50_ms=round(ordered[len(ordered) // 2] * 1000, 3),
        p99_ms=round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 3),
        requests=len(ordered),
        errors=counts[1] + sum(isinstance(r, BaseException) for r in results),
        seconds=round(seconds, 2),
    )


def load_generator() -> str:
    return "wrk" if shutil.which("wrk") else "asyncio fallback (wrk missing)"


def run_load(url: str, token: str, options: LoadOptions, duration_s: float) -> LoadResult:
    if shutil.which("wrk"):
        return _wrk(url, token, options, duration_s)
    return asyncio.run(_fallback(url, token, options, duration_s))


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished children (wrk runs are waited for)."""
    times = os.times()
    return times.children_user + times.children_system


def measure(
    url: str, token: str, options: LoadOptions, pid: int | None, app_pid: int | None = None
) -> LoadResult:
    """Warm up, then one measured run; the CPU time spent during it by the proxy (`pid`),
    the app (`app_pid`), the load generator, and the machine as a whole."""
    if options.warmup_s > 0:
        run_load(url, token, options, options.warmup_s)
    proxy = psutil.Process(pid) if pid is not None else None
    app = psutil.Process(app_pid) if app_pid is not None else None
    before = (
        _cpu_s(proxy) if proxy else None,
        _cpu_s(app) if app else None,
        _children_cpu_s(),
        psutil.cpu_times(),
    )
    result = run_load(url, token, options, options.duration_s)
    machine_after = psutil.cpu_times()
    busy = sum(machine_after) - sum(before[3]) - (machine_after.idle - before[3].idle)
    generator = "wrk" in load_generator()  # the asyncio fallback runs in this process
    return result.with_cpu(
        _cpu_s(proxy) - before[0] if proxy and before[0] is not None else None,
        app_s=_cpu_s(app) - before[1] if app and before[1] is not None else None,
        load_s=_children_cpu_s() - before[2] if generator else None,
        busy_cores=busy / result.seconds if result.seconds else None,
    )


def ensure_tool(binary: str, package: str, console: Console) -> bool:
    """Install a Debian package when its binary is missing (as root); whether it is there."""
    if shutil.which(binary):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        with console.status(f"installing {package} (apt-get)"):
            subprocess.run(  # noqa: S603 - fixed command line
                ["apt-get", "install", "-y", package],  # noqa: S607
                capture_output=True, check=False, timeout=600,
            )  # fmt: skip
    return shutil.which(binary) is not None
