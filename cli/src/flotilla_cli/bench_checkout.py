"""`flotilla bench checkout`: what an order costs end to end through the gateway, until
its saga has CONFIRMED it (reserve the stock, pay, commit), next to what one bank
transfer costs at the same concurrency, measured in one run on one fresh system.

For every concurrency asked for, two phases, one after the other:

- `checkout`: each worker places orders as its own customer, `POST /api/v1/orders` with
  a fresh `Idempotency-Key`, 1-3 distinct products of the demo catalogue, one unit each,
  paid from the customer's account. The POST answers 202 with the order as it stands
  after waiting up to `FLOTILLA_ANSWER_WITHIN_S` for the saga; an order still PENDING
  then is polled (`GET` its `Location`, after 50 ms doubling to 400 ms) until it is
  final. An order counts once it is CONFIRMED; its latency runs from the POST to the
  answer that showed it CONFIRMED.
- `transfer`: the same workers, customers and accounts send the payment the saga makes,
  one `POST /api/v1/transfers` from the customer's account to the shop's account (same
  shard or two-phase commit, as that customer's orders), counted once committed (a 202,
  not final within payments' own wait, is polled as an order is).

The difference between the two rows is what the saga adds over its one payment: two
inventory calls, its own durable steps and the order's writes. `system CPU` is the user +
system CPU time of every process of the system (services, relays, gateway, NATS,
PostgreSQL) during the measured seconds, per completed operation: the load generator's
own CPU is reported apart (it shares the cores).

The gateway's rate limits stay on but are set far above what the load can reach, so
they never refuse it. A benchmark, not a test: it prints a table, writes JSON, says what
machine it ran on, and asserts nothing about speed.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from flotilla_cli.bench_figures import cell, quantile_ms, ratio
from flotilla_cli.chaos.load import Bank, Customer, set_up_bank
from flotilla_cli.machine import machine
from flotilla_cli.planning import shop_account_id
from flotilla_cli.scratch_system import ScratchSystem, scratch_system
from flotilla_cli.state import SystemState
from flotilla_kit.sharding import shard_of
from flotilla_kit.tls import client_context

__all__ = [
    "KINDS",
    "BenchOptions",
    "Outcome",
    "PhaseResult",
    "compare",
    "order_lines",
    "order_outcome",
    "poll_delays",
    "quantile_ms",
    "record",
    "render",
    "run_checkout_bench",
]

Kind = Literal["checkout", "transfer"]
KINDS: dict[str, str] = {"checkout": "checkout (saga)", "transfer": "one transfer"}

_STOCK = 10_000_000  # on hand per product before the load: no order may run out
_DEPOSIT_MINOR = 10**12
_TIMEOUT_S = 30.0
# Polling an order the POST answered PENDING: first after 50 ms, doubling to 400 ms. A
# fixed short delay measured finer, but at 32 in flight its GETs (50/s per order) were
# load of their own that slowed the sagas being measured.
_POLL_FIRST_S = 0.05
_POLL_MAX_S = 0.4
_POLL_DEADLINE_S = 60.0
_IDLE_S = 3.0  # the system's idle CPU is measured this long before the load
_HIGH_LIMIT = "1000000"
# Rate limits stay on (they are part of every request's cost), far above the load.
_ENV = {
    "FLOTILLA_RATE_LIMIT_IDENTITY_RPS": _HIGH_LIMIT,
    "FLOTILLA_RATE_LIMIT_IDENTITY_BURST": _HIGH_LIMIT,
    "FLOTILLA_RATE_LIMIT_IP_RPS": _HIGH_LIMIT,
    "FLOTILLA_RATE_LIMIT_IP_BURST": _HIGH_LIMIT,
}


@dataclass(frozen=True)
class BenchOptions:
    seconds: float = 10.0  # measured, per phase
    warmup_s: float = 2.0  # per phase, not counted
    concurrency: tuple[int, ...] = (1, 8, 32)
    customers: int | None = None  # None: one per worker of the highest concurrency
    database: str = "sqlite"
    shards: int = 2
    instances: int = 2
    seed: int = 7

    @property
    def customer_count(self) -> int:
        return self.customers or max(self.concurrency)


@dataclass
class PhaseResult:
    """One phase's measured run: operations that started after the warm-up."""

    kind: Kind
    concurrency: int
    latencies_s: list[float] = field(default_factory=list)  # completed operations only
    errors: Counter[str] = field(default_factory=Counter)  # what went wrong -> how often
    polled: int = 0  # orders (transfers) whose POST answer was not final yet
    polls: int = 0  # the GETs that polled them
    seconds: float = 0.0
    system_cpu_s: float | None = None
    idle_cores: float | None = None  # the system's CPU with no load, subtracted for `net`
    client_cpu_s: float | None = None
    error_sample: str | None = None

    def error(self, kind: str, sample: str) -> None:
        self.errors[kind] += 1
        self.error_sample = self.error_sample or sample[:300]

    def summary(self) -> dict[str, Any]:
        done = len(self.latencies_s)
        ordered = sorted(self.latencies_s)

        def per_op_ms(cpu_s: float | None) -> float | None:
            return round(cpu_s * 1000 / done, 2) if cpu_s is not None and done else None

        net_cpu_s = (
            max(0.0, self.system_cpu_s - self.idle_cores * self.seconds)
            if self.system_cpu_s is not None and self.idle_cores is not None
            else None
        )

        return {
            "kind": self.kind,
            "concurrency": self.concurrency,
            "done": done,
            "per_s": round(done / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": quantile_ms(ordered, 0.50, digits=1),
            "p99_ms": quantile_ms(ordered, 0.99, digits=1),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(sorted(self.errors.items())),
            "error_sample": self.error_sample,
            "polled": self.polled,
            "polls": self.polls,
            "seconds": round(self.seconds, 2),
            "system_cpu_ms_per_op": per_op_ms(self.system_cpu_s),
            "system_cpu_ms_per_op_net": per_op_ms(net_cpu_s),
            "client_cpu_ms_per_op": per_op_ms(self.client_cpu_s),
        }


# ---------------------------------------------------------------- pure helpers


def order_lines(rng: random.Random, product_ids: Sequence[str]) -> list[dict[str, Any]]:
    """1 to 3 distinct products (fewer if the catalogue is smaller), one unit each."""
    count = rng.randint(1, min(3, len(product_ids)))
    return [{"product_id": p, "quantity": 1} for p in rng.sample(list(product_ids), count)]


def compare(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per concurrency (as a string, for JSON): what a checkout costs over one transfer,
    from the rows of both kinds at that concurrency; None where one is missing or empty."""
    by: dict[tuple[str, int], dict[str, Any]] = {(r["kind"], r["concurrency"]): r for r in rows}
    out: dict[str, dict[str, Any]] = {}
    for concurrency in sorted({r["concurrency"] for r in rows}):
        checkout = by.get(("checkout", concurrency), {})
        transfer = by.get(("transfer", concurrency), {})
        c50, t50 = checkout.get("p50_ms"), transfer.get("p50_ms")
        out[str(concurrency)] = {
            "throughput_checkout_transfer": ratio(checkout.get("per_s"), transfer.get("per_s")),
            "p50_checkout_transfer": ratio(c50, t50),
            "added_p50_ms": round(c50 - t50, 1) if c50 is not None and t50 is not None else None,
            "cpu_checkout_transfer": ratio(
                checkout.get("system_cpu_ms_per_op_net"), transfer.get("system_cpu_ms_per_op_net")
            ),
        }
    return out


# ---------------------------------------------------------------- the system's CPU


def _system_processes(state: SystemState) -> list[psutil.Process]:
    """The supervisor and everything under it, plus the servers it names (in case one
    runs outside its tree)."""
    found: dict[int, psutil.Process] = {}
    roots = [state.supervisor_pid, state.postgres_pid, state.nats_pid, state.valkey_pid]
    for pid in roots:
        if pid is None:
            continue
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                found.setdefault(process.pid, process)
        except psutil.Error:
            continue
    return list(found.values())


class _CpuMeter:
    """CPU seconds the given processes spend between `start` and `stop` (a process gone
    meanwhile counts up to its last reading: none after `start`)."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        self._processes = processes
        self._before: dict[int, float] = {}

    @staticmethod
    def _read(process: psutil.Process) -> float | None:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return None
        return float(times.user + times.system)

    def start(self) -> None:
        self._before = {p.pid: t for p in self._processes if (t := self._read(p)) is not None}

    def stop(self) -> float:
        total = 0.0
        for process in self._processes:
            before = self._before.get(process.pid)
            now = self._read(process)
            if before is not None and now is not None:
                total += now - before
        return total


async def _idle_cores(processes: list[psutil.Process], seconds: float) -> float:
    """CPU the system spends with no load (health probes, relays, recovery loops), in
    cores: what every measured second pays whatever the load."""
    meter = _CpuMeter(processes)
    meter.start()
    began = time.monotonic()
    await asyncio.sleep(seconds)
    return meter.stop() / (time.monotonic() - began)


# ---------------------------------------------------------------- the load


@dataclass(frozen=True)
class _Shop:
    bank: Bank
    product_ids: list[str]
    shop_account: str


@dataclass(frozen=True)
class Outcome:
    """One operation: its latency if it completed, else what went wrong."""

    took_s: float | None
    error: str | None = None
    sample: str = ""
    polls: int = 0  # GETs of an order (a transfer) whose POST answer was not final


def record(result: PhaseResult, outcome: Outcome) -> None:
    if outcome.polls:
        result.polled += 1
        result.polls += outcome.polls
    if outcome.took_s is not None:
        result.latencies_s.append(outcome.took_s)
    else:
        result.error(outcome.error or "unknown", outcome.sample)


def poll_delays(first_s: float = _POLL_FIRST_S, most_s: float = _POLL_MAX_S) -> Iterator[float]:
    """The waits before each poll: doubling from `first_s`, then `most_s` for ever."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, most_s)


def order_outcome(order: dict[str, Any], took_s: float, *, polls: int) -> Outcome:
    """A final order: CONFIRMED completed; anything else is an error named by its state
    and reason (`CANCELLED:out-of-stock`)."""
    if order["state"] == "CONFIRMED":
        return Outcome(took_s, polls=polls)
    return Outcome(None, f"{order['state']}:{order.get('reason')}", str(order), polls=polls)


@dataclass
class _Load:
    client: httpx.AsyncClient
    shop: _Shop
    rng: random.Random

    async def checkout(self, customer: Customer) -> Outcome:
        headers = {"Authorization": f"Bearer {customer.token}"}
        body = {
            "lines": order_lines(self.rng, self.shop.product_ids),
            "payment_account": customer.accounts[0],
        }
        began = time.monotonic()
        response = await self.client.post(
            "/api/v1/orders", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
        )
        if response.status_code != 202:
            return Outcome(None, str(response.status_code), response.text)
        order: dict[str, Any] = response.json()
        if order["state"] != "PENDING":
            return order_outcome(order, time.monotonic() - began, polls=0)
        location = response.headers.get("Location") or f"/api/v1/orders/{order['id']}"
        final, polls = await self._poll(location, headers, began, order, ("PENDING",))
        if final is None:
            return Outcome(None, "still-pending", str(order), polls=polls)
        return order_outcome(final, time.monotonic() - began, polls=polls)

    async def transfer(self, customer: Customer) -> Outcome:
        """Done when committed: a 202 (not final within payments' own wait) is polled,
        as the saga asks again until its payment is final."""
        headers = {"Authorization": f"Bearer {customer.token}"}
        began = time.monotonic()
        response = await self.client.post(
            "/api/v1/transfers",
            json={
                "from_account": customer.accounts[0],
                "to_account": self.shop.shop_account,
                "amount_minor": 1,
                "currency": "EUR",
                "reference": "bench",
            },
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        if response.status_code == 201:
            return Outcome(time.monotonic() - began)
        if response.status_code != 202:
            return Outcome(None, str(response.status_code), response.text)
        transfer: dict[str, Any] = response.json()
        location = response.headers.get("Location") or f"/api/v1/transfers/{transfer['id']}"
        final, polls = await self._poll(
            location, headers, began, transfer, ("preparing", "committing", "aborting")
        )
        if final is None:
            return Outcome(None, "still-pending", str(transfer), polls=polls)
        if final["state"] == "committed":
            return Outcome(time.monotonic() - began, polls=polls)
        return Outcome(None, f"{final['state']}:{final.get('refusal')}", str(final), polls=polls)

    async def _poll(
        self,
        location: str,
        headers: dict[str, str],
        began: float,
        current: dict[str, Any],
        pending: tuple[str, ...],
    ) -> tuple[dict[str, Any] | None, int]:
        """GET `location` until its state is not one of `pending`: the final body (None
        after `_POLL_DEADLINE_S` from `began`) and how many GETs it took."""
        polls = 0
        delays = poll_delays()
        while current["state"] in pending:
            if time.monotonic() - began > _POLL_DEADLINE_S:
                return None, max(polls, 1)
            await asyncio.sleep(next(delays))  # a remote state: nothing to await
            polls += 1
            answer = await self.client.get(location, headers=headers)
            if answer.status_code == 200:
                current = answer.json()
        return current, polls


async def _phase(
    *,
    gateway: str,
    tls: ssl.SSLContext,
    shop: _Shop,
    kind: Kind,
    concurrency: int,
    options: BenchOptions,
    system: list[psutil.Process],
    idle_cores: float,
) -> PhaseResult:
    """`concurrency` workers, each as its own customer, loop over the operation for
    warm-up plus measured seconds; only operations that start after the warm-up count."""
    result = PhaseResult(kind, concurrency, idle_cores=idle_cores)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    system_cpu, client_cpu = _CpuMeter(system), _CpuMeter([psutil.Process()])
    customers = shop.bank.customers
    async with httpx.AsyncClient(
        base_url=gateway, verify=tls, timeout=_TIMEOUT_S, limits=limits
    ) as client:
        rng = random.Random(options.seed)  # noqa: S311 - picks order lines, not secrets
        load = _Load(client, shop, rng)
        operation = load.checkout if kind == "checkout" else load.transfer
        measure_from = time.monotonic() + options.warmup_s
        stop_at = measure_from + options.seconds

        async def worker(number: int) -> None:
            customer = customers[number % len(customers)]
            while (now := time.monotonic()) < stop_at:
                try:
                    outcome = await operation(customer)
                except httpx.HTTPError as error:
                    outcome = Outcome(None, type(error).__name__, repr(error))
                if now >= measure_from:
                    record(result, outcome)

        async def meter() -> None:
            await asyncio.sleep(options.warmup_s)
            system_cpu.start()
            client_cpu.start()

        metering = asyncio.create_task(meter())
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        result.seconds = time.monotonic() - measure_from
        await metering
        result.system_cpu_s = system_cpu.stop()
        result.client_cpu_s = client_cpu.stop()
    return result


async def _stock_up(client: httpx.AsyncClient, admin: dict[str, str]) -> list[str]:
    """The catalogue's product ids, each with at least `_STOCK` available."""
    response = await client.get("/api/v1/products", params={"limit": 100})
    response.raise_for_status()
    products: list[dict[str, Any]] = response.json()["items"]
    if not products:
        raise RuntimeError("the catalogue is empty: no demo products were seeded")
    for product in products:
        missing = _STOCK - int(product["available"])
        if missing <= 0:
            continue
        adjusted = await client.post(
            f"/api/v1/products/{product['id']}/stock-adjustments",
            json={"delta": missing, "reason": "bench checkout"},
            headers={**admin, "Idempotency-Key": uuid.uuid4().hex},
        )
        if adjusted.status_code != 200:
            raise RuntimeError(
                f"stock adjustment of {product['sku']}: {adjusted.status_code} "
                f"{adjusted.text[:300]}"
            )
    return [str(p["id"]) for p in products]


async def _set_up(running: ScratchSystem, tls: ssl.SSLContext, options: BenchOptions) -> _Shop:
    async with httpx.AsyncClient(
        base_url=running.state.gateway_url, verify=tls, timeout=_TIMEOUT_S
    ) as client:
        password = running.password("ada")
        bank = await set_up_bank(
            client, password, customers=options.customer_count, accounts_each=1,
            deposit_minor=_DEPOSIT_MINOR,
        )  # fmt: skip
        login = await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": "ada", "password": password},
        )
        login.raise_for_status()
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        product_ids = await _stock_up(client, admin)
    return _Shop(bank, product_ids, shop_account_id(running.state.shards))


async def run_checkout_bench(options: BenchOptions, console: Console) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    with scratch_system(
        database=options.database, shards=options.shards, instances=options.instances,
        env=_ENV, console=console,
    ) as running:  # fmt: skip
        started = time.monotonic()
        tls = client_context(running.layout.tls / "ca.pem")
        with console.status(f"{options.customer_count} customers, accounts, stock"):
            shop = await _set_up(running, tls, options)
        set_up = time.monotonic()
        system = _system_processes(running.state)
        with console.status(f"the system's idle CPU, {_IDLE_S:g} s"):
            idle_cores = await _idle_cores(system, _IDLE_S)
        for concurrency in options.concurrency:
            for kind in ("checkout", "transfer"):
                with console.status(
                    f"{KINDS[kind]}, {concurrency} concurrent: {options.warmup_s:g} s "
                    f"warm-up, {options.seconds:g} s measured"
                ):
                    phase = await _phase(
                        gateway=running.state.gateway_url, tls=tls, shop=shop, kind=kind,
                        concurrency=concurrency, options=options, system=system,
                        idle_cores=idle_cores,
                    )  # fmt: skip
                rows.append(phase.summary())
    shop_shard = shard_of(shop.shop_account)
    local = sum(1 for _, a in shop.bank.accounts if shard_of(a) == shop_shard)
    return {
        "benchmark": "checkout (order until CONFIRMED) vs one transfer, through the gateway",
        "options": {**asdict(options), "customers": options.customer_count},
        "machine": machine(),
        "system_processes": len(system),
        "idle_system_cpu_cores": round(idle_cores, 3),
        "timings_s": {
            "start_system": round(started - began, 1),
            "set_up": round(set_up - started, 1),
            "total": round(time.monotonic() - began, 1),
        },
        "products": len(shop.product_ids),
        "payments_local_customers": local,
        "payments_2pc_customers": len(shop.bank.accounts) - local,
        "rows": rows,
        "comparison": compare(rows),
    }


# ---------------------------------------------------------------- output


def render(report: dict[str, Any], console: Console) -> None:
    options = report["options"]
    table = Table(
        title=f"Checkout vs one transfer through the gateway ({options['database']}, "
        f"{options['shards']} shards x {options['instances']} instances, "
        f"{options['seconds']:g} s each; CPU: the system's ms per operation, net: "
        f"less its idle {report['idle_system_cpu_cores']:g} cores)",
        title_justify="left",
    )
    columns = ("conc.", "work", "ops/s", "p50 ms", "p99 ms", "errors", "polled", "CPU", "net")
    for column in columns:
        table.add_column(column, justify="left" if column == "work" else "right")
    comparison = report["comparison"]
    for row in report["rows"]:
        errors = str(row["errors"])
        table.add_row(
            str(row["concurrency"]),
            KINDS[row["kind"]],
            f"{row['per_s']:,.1f}",
            cell(row["p50_ms"]),
            cell(row["p99_ms"]),
            f"[red]{errors}[/]" if row["errors"] else errors,
            str(row["polled"]),
            cell(row["system_cpu_ms_per_op"]),
            cell(row["system_cpu_ms_per_op_net"]),
            end_section=row["kind"] == "transfer",
        )
    console.print(table)
    for concurrency, ratios in comparison.items():
        console.print(
            f"at {concurrency}: checkout/transfer throughput "
            f"[bold]{cell(ratios['throughput_checkout_transfer'])}[/], p50 "
            f"[bold]{cell(ratios['p50_checkout_transfer'])}x[/] "
            f"(+{cell(ratios['added_p50_ms'])} ms), net system CPU "
            f"[bold]{cell(ratios['cpu_checkout_transfer'])}x[/]",
            highlight=False,
        )
    console.print(
        f"payments: {report['payments_local_customers']} customers on the shop's shard "
        f"(local), {report['payments_2pc_customers']} on the other (2PC); polled: orders "
        "(transfers) the POST answered PENDING (202), then polled until final",
        highlight=False,
    )
    for row in report["rows"]:
        if row["error_sample"]:
            console.print(f"{row['kind']} at {row['concurrency']}: {row['error_kinds']}, "
                          f"e.g. {row['error_sample']}", style="yellow", highlight=False,
                          markup=False)  # fmt: skip
    timings = report["timings_s"]
    console.print(
        f"took {timings['total']:g} s: the system's start {timings['start_system']:g} s, "
        f"customers and stock {timings['set_up']:g} s",
        highlight=False,
    )
    console.print(f"machine: {report['machine']}", highlight=False)
