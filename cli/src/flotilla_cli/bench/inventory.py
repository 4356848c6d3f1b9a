"""`flotilla bench inventory`: what a stock reservation costs over REST, over unary gRPC
and over the bidirectional `ReserveStream`, measured in one run against one inventory
process, one transport after the other.

The work is the same in every mode: reserve one unit of one product, then release it,
with `concurrency` of them in flight at any time:

- `rest`: `POST /internal/v1/reservations`, then `POST /internal/v1/reservations/{id}/release`,
  over HTTPS with a client certificate (aiohttp: cheaper per request than httpx here),
  `concurrency` keep-alive connections;
- `grpc_unary`: `Reserve`, then `Release`, on one `grpc.aio` channel (HTTP/2 multiplexes
  the calls in flight);
- `grpc_stream`: the Reserve on one `ReserveStream` of that channel, requests pipelined
  (answers matched by reservation id), then a unary `Release` (the contract has no
  release stream).

The service runs as its own process (`python -m flotilla_inventory serve`), SQLite under
a temporary directory, as deployed: mutual TLS on both APIs, tokens checked (minted by a
`TokenMinter` whose JWKS a local server publishes), metrics and the access log on. The
load runs in this process, on the same machine: each row says how much CPU the service
and the load generator spent per reservation.

A benchmark, not a test: it prints a table, writes JSON, says what machine it ran on, and
asserts nothing about speed (`ratio_grpc_rest`, the stream against REST, has a target of 2,
printed next to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psutil
from grpc import aio
from rich.console import Console
from rich.table import Table

from flotilla_cli.bench.figures import cell, quantile_ms, ratio
from flotilla_cli.bench.harness import Children, auth_endpoints
from flotilla_cli.launcher.machine import machine
from flotilla_kit.devservers import free_port
from flotilla_kit.rpc import bearer, secure_channel
from flotilla_kit.settings import TlsSettings
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths, client_context, ensure_dev_pki
from flotilla_proto.inventory.v1 import inventory_pb2 as pb
from flotilla_proto.inventory.v1 import inventory_pb2_grpc as pb_grpc

__all__ = [
    "MODES",
    "TARGETS",
    "BenchOptions",
    "ModeResult",
    "quantile_ms",
    "render",
    "run_inventory_bench",
    "summarise",
]

MODES: dict[str, str] = {
    "rest": "REST (HTTPS, aiohttp)",
    "grpc_unary": "gRPC unary",
    "grpc_stream": "gRPC ReserveStream",
}
# Metric -> (comparison, bound): printed next to the results, never asserted.
TARGETS: dict[str, tuple[str, float]] = {"ratio_grpc_rest": (">=", 2.0)}

_STOCK = 1_000_000
_CALL_TIMEOUT_S = 30.0
_READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class BenchOptions:
    duration_s: float = 10.0  # per mode
    warmup_s: float = 2.0  # per mode, not counted
    concurrency: int = 16  # reservations in flight


@dataclass
class ModeResult:
    """One mode's measured run."""

    mode: str
    latencies_s: list[float] = field(default_factory=list)  # per reserve + release
    errors: int = 0
    seconds: float = 0.0
    server_cpu_s: float | None = None
    client_cpu_s: float | None = None
    error_sample: str | None = None

    def summary(self) -> dict[str, Any]:
        done = len(self.latencies_s)
        ordered = sorted(self.latencies_s)

        def per_reservation(cpu_s: float | None) -> float | None:
            return round(cpu_s * 1e6 / done, 1) if cpu_s is not None and done else None

        return {
            "mode": self.mode,
            "reservations": done,
            "reservations_per_s": round(done / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": quantile_ms(ordered, 0.50),
            "p99_ms": quantile_ms(ordered, 0.99),
            "errors": self.errors,
            "error_sample": self.error_sample,
            "seconds": round(self.seconds, 2),
            "server_cpu_us_per_reservation": per_reservation(self.server_cpu_s),
            "client_cpu_us_per_reservation": per_reservation(self.client_cpu_s),
        }


# ---------------------------------------------------------------- pure helpers


def summarise(modes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ratios of the modes' throughputs (None where a mode is missing or did nothing)."""

    def rate(mode: str) -> float | None:
        value = modes.get(mode, {}).get("reservations_per_s")
        return float(value) if value else None

    return {
        "ratio_grpc_rest": ratio(rate("grpc_stream"), rate("rest")),
        "ratio_unary_rest": ratio(rate("grpc_unary"), rate("rest")),
    }


def target_met(metric: str, value: float | None) -> bool | None:
    if value is None or metric not in TARGETS:
        return None
    comparison, bound = TARGETS[metric]
    return value >= bound if comparison == ">=" else value <= bound


# ---------------------------------------------------------------- the service


@dataclass(frozen=True)
class _Service:
    http_url: str
    grpc_target: str
    pid: int
    product_id: str
    client: CertificatePaths


def _env(tmp: Path, auth_urls: tuple[str, str], pki: CertificatePaths) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    return env | {
        "FLOTILLA_PROFILE": "dev",
        "FLOTILLA_HOST": "127.0.0.1",
        "FLOTILLA_VAR_DIR": str(tmp),
        "FLOTILLA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'inventory.db'}",
        "FLOTILLA_JWKS_URLS": json.dumps([auth_urls[0]]),
        "FLOTILLA_REVOCATION_URLS": json.dumps([auth_urls[1]]),
        "FLOTILLA_TLS_CERT_FILE": str(pki.cert),
        "FLOTILLA_TLS_KEY_FILE": str(pki.key),
        "FLOTILLA_TLS_CA_FILE": str(pki.ca),
    }


def _seed(env: dict[str, str], tmp: Path) -> str:
    """One product with plenty of stock; its id."""
    seed = tmp / "products.json"
    seed.write_text(
        json.dumps(
            {
                "products": [
                    {
                        "sku": "BENCH-1",
                        "name": "Bench widget",
                        "price_minor": 100,
                        "currency": "EUR",
                        "on_hand": _STOCK,
                    }
                ]
            }
        )
    )
    done = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "flotilla_inventory", "seed", "--file", str(seed)],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"seeding the inventory failed:\n{done.stderr[-2000:]}")
    product_id: str = json.loads(done.stdout)["products"][0]["id"]
    return product_id


def _wait_ready(url: str, client: CertificatePaths, alive: Callable[[], bool]) -> None:
    """Until `/readyz` answers 200 over mutual TLS (which also means the gRPC server,
    started before the app says it is up, listens), or RuntimeError."""
    import httpx  # noqa: PLC0415 - only needed here; the load itself uses aiohttp

    context = client_context(client.ca, client.cert, client.key)
    deadline = time.monotonic() + _READY_TIMEOUT_S
    last = "no answer"
    with httpx.Client(verify=context, timeout=2) as http:
        while time.monotonic() < deadline and alive():
            try:
                response = http.get(url + "/readyz")
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as error:
                last = repr(error)
            time.sleep(0.2)
    raise RuntimeError(f"the inventory never became ready: {last}")


@contextlib.contextmanager
def _inventory(children: Children, tmp: Path, minter: TokenMinter) -> Iterator[_Service]:
    pki = ensure_dev_pki(tmp / "tls", ["inventory", "orders"])
    with auth_endpoints(minter) as auth_urls:
        env = _env(tmp, auth_urls, pki["inventory"])
        product_id = _seed(env, tmp)
        port, grpc_port = free_port(), free_port()
        env |= {"FLOTILLA_PORT": str(port), "FLOTILLA_GRPC_PORT": str(grpc_port)}
        child = children.start(
            "inventory", [sys.executable, "-m", "flotilla_inventory", "serve"], env
        )
        url = f"https://127.0.0.1:{port}"
        try:
            _wait_ready(url, pki["orders"], lambda: child.process.poll() is None)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{children.tail(child)}") from error
        yield _Service(url, f"127.0.0.1:{grpc_port}", child.process.pid, product_id,
                       pki["orders"])  # fmt: skip


# ---------------------------------------------------------------- the load

# One iteration: reserve and release one reservation; its latency, or an exception.
Iteration = Callable[[str], Awaitable[None]]


async def _drive(
    iteration: Iteration, mode: str, options: BenchOptions, server_pid: int
) -> ModeResult:
    """`concurrency` workers loop over `iteration` for warm-up plus duration; only
    iterations that start after the warm-up count."""
    result = ModeResult(mode)
    ids = itertools.count()
    server = psutil.Process(server_pid)
    me = psutil.Process()
    started = time.monotonic()
    measure_from = started + options.warmup_s
    stop_at = measure_from + options.duration_s

    async def worker(number: int) -> None:
        while (now := time.monotonic()) < stop_at:
            reservation_id = f"{mode}-{number}-{next(ids)}"
            try:
                await iteration(reservation_id)
            except Exception as error:  # a failed iteration is counted, not fatal
                if now >= measure_from:
                    result.errors += 1
                    result.error_sample = result.error_sample or repr(error)[:300]
                continue
            if now >= measure_from:
                result.latencies_s.append(time.monotonic() - now)

    async def cpu_after_warmup() -> tuple[float, float]:
        await asyncio.sleep(options.warmup_s)
        return _cpu_s(server), _cpu_s(me)

    sample = asyncio.create_task(cpu_after_warmup())
    await asyncio.gather(*(worker(n) for n in range(options.concurrency)))
    result.seconds = time.monotonic() - measure_from
    server_before, client_before = await sample
    result.server_cpu_s = _cpu_s(server) - server_before
    result.client_cpu_s = _cpu_s(me) - client_before
    return result


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _check(answer: pb.Reservation, state: pb.ReservationState.ValueType) -> None:
    if answer.state != state:
        raise RuntimeError(
            f"{answer.reservation_id}: {pb.ReservationState.Name(answer.state)} ({answer.detail})"
        )


async def _rest(service: _Service, token: str, options: BenchOptions) -> ModeResult:
    context = client_context(service.client.ca, service.client.cert, service.client.key)
    connector = aiohttp.TCPConnector(limit=options.concurrency, ssl=context)
    headers = {"Authorization": f"Bearer {token}"}
    line = [{"product_id": service.product_id, "quantity": 1}]
    base = service.http_url + "/internal/v1/reservations"
    async with aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=_CALL_TIMEOUT_S),
    ) as session:

        async def iteration(reservation_id: str) -> None:
            body = {"reservation_id": reservation_id, "lines": line}
            async with session.post(base, json=body) as held:
                answer = await held.json()
                if held.status != 200 or answer["state"] != "held":
                    raise RuntimeError(f"reserve: {held.status} {answer}")
            async with session.post(f"{base}/{reservation_id}/release") as released:
                answer = await released.json()
                if released.status != 200 or answer["state"] != "released":
                    raise RuntimeError(f"release: {released.status} {answer}")

        return await _drive(iteration, "rest", options, service.pid)


def _tls(paths: CertificatePaths) -> TlsSettings:
    return TlsSettings(cert_file=paths.cert, key_file=paths.key, ca_file=paths.ca)


async def _grpc_unary(service: _Service, token: str, options: BenchOptions) -> ModeResult:
    metadata = bearer(token)
    line = [pb.Line(product_id=service.product_id, quantity=1)]
    async with secure_channel(service.grpc_target, _tls(service.client)) as channel:
        stub = pb_grpc.InventoryStub(channel)

        async def iteration(reservation_id: str) -> None:
            held = await stub.Reserve(
                pb.ReserveRequest(reservation_id=reservation_id, lines=line),
                metadata=metadata,
                timeout=_CALL_TIMEOUT_S,
            )
            _check(held, pb.HELD)
            released = await stub.Release(
                pb.ReservationRef(reservation_id=reservation_id),
                metadata=metadata,
                timeout=_CALL_TIMEOUT_S,
            )
            _check(released, pb.RELEASED)

        return await _drive(iteration, "grpc_unary", options, service.pid)


class _Pipeline:
    """One ReserveStream carrying every worker's Reserve; a reader task hands each answer
    to the worker waiting for that reservation id."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._waiting: dict[str, asyncio.Future[pb.Reservation]] = {}
        # grpc.aio allows one write at a time on a call.
        self._writing = asyncio.Lock()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                answer = await self._call.read()
                if answer is aio.EOF:
                    raise RuntimeError("the stream ended")
                waiter = self._waiting.pop(answer.reservation_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)
        except (grpc.RpcError, RuntimeError) as error:
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(RuntimeError(f"stream: {error!r}"))
            self._waiting.clear()

    async def reserve(self, request: pb.ReserveRequest) -> pb.Reservation:
        if self._reader.done():
            raise RuntimeError("the stream is gone")
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[request.reservation_id] = waiter
        async with self._writing:
            await self._call.write(request)
        return await asyncio.wait_for(waiter, _CALL_TIMEOUT_S)

    async def close(self) -> None:
        with contextlib.suppress(grpc.RpcError):
            await self._call.done_writing()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        self._call.cancel()


async def _grpc_stream(service: _Service, token: str, options: BenchOptions) -> ModeResult:
    metadata = bearer(token)
    line = [pb.Line(product_id=service.product_id, quantity=1)]
    async with secure_channel(service.grpc_target, _tls(service.client)) as channel:
        stub = pb_grpc.InventoryStub(channel)
        pipeline = _Pipeline(stub.ReserveStream(metadata=metadata))
        try:

            async def iteration(reservation_id: str) -> None:
                held = await pipeline.reserve(
                    pb.ReserveRequest(reservation_id=reservation_id, lines=line)
                )
                _check(held, pb.HELD)
                released = await stub.Release(
                    pb.ReservationRef(reservation_id=reservation_id),
                    metadata=metadata,
                    timeout=_CALL_TIMEOUT_S,
                )
                _check(released, pb.RELEASED)

            return await _drive(iteration, "grpc_stream", options, service.pid)
        finally:
            await pipeline.close()


_RUNNERS = {"rest": _rest, "grpc_unary": _grpc_unary, "grpc_stream": _grpc_stream}


def run_inventory_bench(options: BenchOptions, console: Console) -> dict[str, Any]:
    minter = TokenMinter()
    token = minter.mint("orders", ["service:orders"], ttl_s=24 * 3600)
    modes: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flotilla-bench-inv-")))
        children = stack.enter_context(Children(tmp))
        with console.status("starting the inventory service"):
            service = stack.enter_context(_inventory(children, tmp, minter))
        for mode, runner in _RUNNERS.items():
            with console.status(
                f"{MODES[mode]}: {options.warmup_s:g} s warm-up, {options.duration_s:g} s "
                f"measured, {options.concurrency} in flight"
            ):
                modes[mode] = asyncio.run(runner(service, token, options)).summary()
    return {
        "benchmark": "stock reservations: REST vs gRPC unary vs gRPC stream",
        "work": "reserve 1 unit of 1 product, then release it",
        "options": asdict(options),
        "machine": machine(),
        "modes": modes,
        **summarise(modes),
        "targets": {metric: f"{op} {bound}" for metric, (op, bound) in TARGETS.items()},
    }


# ---------------------------------------------------------------- output


def render(report: dict[str, Any], console: Console) -> None:
    options = report["options"]
    table = Table(
        title=f"Stock reservations ({report['work']}), {options['concurrency']} in flight, "
        f"{options['duration_s']:g} s each; server, client: CPU µs per reservation",
        title_justify="left",
    )
    for column in ("mode", "reservations/s", "p50 ms", "p99 ms", "errors", "server", "client"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for key, label in MODES.items():
        row = report["modes"].get(key)
        if row is None:
            continue
        table.add_row(
            label, f"{row['reservations_per_s']:,.1f}", cell(row["p50_ms"]),
            cell(row["p99_ms"]), str(row["errors"]),
            cell(row["server_cpu_us_per_reservation"]),
            cell(row["client_cpu_us_per_reservation"]),
        )  # fmt: skip
    console.print(table)
    for metric in ("ratio_grpc_rest", "ratio_unary_rest"):
        value = report.get(metric)
        target = TARGETS.get(metric)
        met = target_met(metric, value)
        note = (
            ""
            if target is None
            else f" (target {target[0]} {target[1]}: "
            + ("[green]met[/])" if met else "[red]not met[/])" if met is False else "-)")
        )
        console.print(f"{metric}: [bold]{cell(value)}[/]{note}")
    for row in report["modes"].values():
        if row["error_sample"]:
            console.print(f"[yellow]{row['mode']}: {row['errors']} errors, e.g. "
                          f"{row['error_sample']}[/]", highlight=False)  # fmt: skip
    console.print(f"machine: {report['machine']}", highlight=False)
