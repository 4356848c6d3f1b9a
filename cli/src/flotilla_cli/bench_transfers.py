"""`flotilla bench transfers`: what a transfer costs through the gateway when both accounts
are on one ledger shard (one local transaction) and when they are on two (two-phase
commit), measured in one run on one fresh system, one phase after the other.

A benchmark, not a test: it prints a table, writes JSON, says what machine it ran on, and
asserts nothing about speed.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from rich.console import Console
from rich.table import Table

from flotilla_cli.chaos.load import Bank, set_up_bank
from flotilla_cli.machine import machine
from flotilla_cli.scratch_system import scratch_system
from flotilla_kit.sharding import shard_of
from flotilla_kit.tls import client_context

__all__ = ["BenchOptions", "render", "run_transfer_bench"]

Path_ = Literal["local", "2pc"]


@dataclass(frozen=True)
class BenchOptions:
    duration_s: float = 20.0  # per phase
    warmup_s: float = 3.0  # per phase, not counted
    concurrency: int = 16
    customers: int = 16
    database: str = "sqlite"
    shards: int = 2
    instances: int = 2


@dataclass
class PhaseResult:
    path: Path_
    latencies_s: list[float] = field(default_factory=list)  # committed transfers only
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        committed = len(self.latencies_s)
        ordered = sorted(self.latencies_s)

        def quantile(q: float) -> float | None:
            return round(ordered[int(q * (committed - 1))] * 1000, 1) if ordered else None

        return {
            "path": self.path,
            "committed": committed,
            "transfers_per_s": round(committed / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": quantile(0.50),
            "p99_ms": quantile(0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else None,
            "errors": sum(n for status, n in self.statuses.items() if status != 201)
            + self.transport_errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "seconds": round(self.seconds, 1),
        }


def _pairs(bank: Bank, path: Path_) -> list[tuple[str, str, str]]:
    """(token, from, to) for every ordered pair of accounts on the path's shards."""
    accounts = [(c.token, a) for c, a in bank.accounts]
    return [
        (token, source, target)
        for token, source in accounts
        for _, target in accounts
        if source != target and (shard_of(source) == shard_of(target)) == (path == "local")
    ]


async def _phase(
    gateway_url: str, tls: ssl.SSLContext, bank: Bank, path: Path_, options: BenchOptions
) -> PhaseResult:
    pairs = _pairs(bank, path)
    if not pairs:
        raise RuntimeError(f"no account pairs for {path} transfers: too few customers or shards")
    result = PhaseResult(path)
    rng = random.Random(7)
    limits = httpx.Limits(
        max_connections=options.concurrency, max_keepalive_connections=options.concurrency
    )
    async with httpx.AsyncClient(
        base_url=gateway_url, verify=tls, timeout=30.0, limits=limits
    ) as client:
        started = time.monotonic()
        measure_from = started + options.warmup_s
        stop_at = measure_from + options.duration_s

        async def worker() -> None:
            while (now := time.monotonic()) < stop_at:
                token, source, target = rng.choice(pairs)
                try:
                    response = await client.post(
                        "/api/v1/transfers",
                        json={
                            "from_account": source,
                            "to_account": target,
                            "amount_minor": 1,
                            "currency": "EUR",
                            "reference": "bench",
                        },
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Idempotency-Key": uuid.uuid4().hex,
                        },
                    )
                except httpx.HTTPError:
                    if now >= measure_from:
                        result.transport_errors += 1
                    continue
                took = time.monotonic() - now
                if now < measure_from:
                    continue
                result.statuses[response.status_code] += 1
                if response.status_code == 201:
                    result.latencies_s.append(took)

        await asyncio.gather(*(worker() for _ in range(options.concurrency)))
        result.seconds = time.monotonic() - measure_from
    return result


async def run_transfer_bench(options: BenchOptions, console: Console) -> dict[str, Any]:
    with scratch_system(
        database=options.database, shards=options.shards, instances=options.instances,
        console=console,
    ) as running:  # fmt: skip
        tls = client_context(running.layout.tls / "ca.pem")
        gateway = running.state.gateway_url
        async with httpx.AsyncClient(base_url=gateway, verify=tls, timeout=30) as client:
            with console.status("opening accounts"):
                bank = await set_up_bank(
                    client, running.password("ada"), customers=options.customers,
                    accounts_each=1, deposit_minor=10**12,
                )  # fmt: skip
        phases: dict[str, Any] = {}
        for path in ("local", "2pc"):
            with console.status(f"{path}: {options.warmup_s:.0f} s warm-up, "
                                f"{options.duration_s:.0f} s measured"):  # fmt: skip
                phases[path] = (await _phase(gateway, tls, bank, path, options)).summary()
    local, cross = phases["local"]["transfers_per_s"], phases["2pc"]["transfers_per_s"]
    return {
        "benchmark": "transfers through the gateway",
        "options": options.__dict__,
        "machine": machine(),
        "phases": phases,
        "ratio_cross_local": round(cross / local, 2) if local else None,
    }


def render(report: dict[str, Any], console: Console) -> None:
    options = report["options"]
    table = Table(
        title=f"Transfers through the gateway ({options['database']}, {options['shards']} "
        f"shards x {options['instances']} instances, {options['concurrency']} concurrent "
        f"clients, {options['duration_s']:.0f} s each)",
        title_justify="left",
    )
    for column in ("path", "transfers/s", "p50 ms", "p99 ms", "committed", "errors"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for phase in report["phases"].values():
        table.add_row(
            "same shard (local)" if phase["path"] == "local" else "cross shard (2PC)",
            f"{phase['transfers_per_s']:.1f}",
            str(phase["p50_ms"]),
            str(phase["p99_ms"]),
            str(phase["committed"]),
            str(phase["errors"]),
        )
    console.print(table)
    console.print(f"ratio_cross_local: [bold]{report['ratio_cross_local']}[/]")
    console.print(f"machine: {report['machine']}", highlight=False)
