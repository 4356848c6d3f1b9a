"""`flotilla chaos shop`: a fresh system, hundreds of concurrent checkouts, random SIGKILLs
of the shop's processes (orders, inventory, payments and their outbox relays) and
injected crashes at every step of the orders saga, then a reconciliation of every
database against what the shop promises.

It starts its own system (in a temporary var/ unless told otherwise), so it never
touches the one you are running.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from flotilla_cli.chaos.bank import FAULT_POINTS as PAYMENTS_FAULT_POINTS
from flotilla_cli.chaos.killer import kill_randomly
from flotilla_cli.chaos.reconcile import query_rows, read_ledger
from flotilla_cli.chaos.shop_load import OrderResult, Shop, run_orders, set_up_shop
from flotilla_cli.chaos.shop_reconcile import (
    Scenario,
    canonical,
    check_shop_invariants,
    outboxes_caught_up,
    read_events,
    read_shop,
)
from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.machine import machine
from flotilla_cli.launcher.planning import shop_account_id
from flotilla_cli.launcher.scratch_system import scratch_system
from flotilla_cli.launcher.service_commands import read_plan
from flotilla_cli.launcher.state import SystemState
from flotilla_kit.events import list_dead_letters
from flotilla_kit.tls import client_context

__all__ = [
    "ORDERS_FAULT_POINTS",
    "SHOP_VICTIMS",
    "ShopChaosOptions",
    "faults_fired",
    "run_shop_chaos",
    "system_faults",
]

# Crash points of the orders saga (services/orders/README.md, "Fault injection"): one
# after every durable step and one after every remote call.
ORDERS_FAULT_POINTS = (
    "after_order_recorded",
    "after_reserve_call",
    "after_paying_recorded",
    "after_pay_call",
    "after_attempt_recorded",
    "after_committing_recorded",
    "after_commit_call",
    "after_refunding_recorded",
    "after_refund_call",
    "after_releasing_recorded",
    "after_release_call",
    "after_final_recorded",
)
# Killed at random: serving instances and relays of these (the supervisor restarts them).
SHOP_VICTIMS = ("orders", "inventory", "payments", "billing")


@dataclass(frozen=True)
class ShopChaosOptions:
    orders: int = 300
    kills: int = 8
    billing_kills: int = 2  # on top of `kills`: billing instances, whatever the draw
    concurrency: int = 16
    rich_customers: int = 6
    poor_customers: int = 2
    rich_deposit_minor: int = 5_000_000
    poor_deposit_minor: int = 4_000
    shards: int = 2
    instances: int = 2
    seed: int = 1
    fault_rate: float = 0.01  # per saga step and orders fault point; 0 injects none
    payments_fault_rate: float = 0.0  # per transfer and payments fault point
    final_within_s: float = 120.0  # after the last order was sent
    settle_within_s: float = 90.0  # then, for the outboxes and consumers
    database: str = "sqlite"
    var_dir: Path | None = None  # None: a fresh temporary directory, removed afterwards
    keep: bool = False


def system_faults(options: ShopChaosOptions) -> dict[str, float]:
    """One FLOTILLA_FAULTS for the whole system: each point qualified by its service, so
    that each service takes its own and no other service refuses to start."""
    faults = {f"orders:{p}": options.fault_rate for p in ORDERS_FAULT_POINTS}
    faults.update({f"payments:{p}": options.payments_fault_rate for p in PAYMENTS_FAULT_POINTS})
    return {point: rate for point, rate in faults.items() if rate > 0}


def _database_urls(layout: VarLayout) -> tuple[dict[str, str], dict[int, str]]:
    plan = read_plan(layout)
    urls = {
        i.service: i.env["FLOTILLA_DATABASE_URL"]
        for i in plan.instances
        if i.service in ("orders", "inventory", "payments", "billing") and i.command == "serve"
    }
    shard_urls = {
        i.shard: i.env["FLOTILLA_DATABASE_URL"]
        for i in plan.instances
        if i.service == "accounts" and i.shard is not None
    }
    return urls, shard_urls


async def _pending_orders(url: str) -> int:
    [(pending,)] = await query_rows(url, "SELECT COUNT(*) FROM orders WHERE state = 'PENDING'")
    return int(pending)


async def _wait_until_settled(layout: VarLayout, timeout_s: float) -> tuple[float, bool]:
    """Until every instance is back, no order is PENDING, every outbox is published and
    every consumer has applied all of its producer's events. (seconds, settled)."""
    urls, _ = _database_urls(layout)
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        state = SystemState.read(layout.state_file)
        if state is not None and state.all_ready and await _pending_orders(urls["orders"]) == 0:
            outbox, inbox = await read_events(urls)
            if outboxes_caught_up(outbox, inbox):
                return time.monotonic() - started, True
        await asyncio.sleep(1.0)  # watching other processes settle: nothing to await
    return time.monotonic() - started, False


def faults_fired(layout: VarLayout) -> dict[str, int]:
    """Crash points that fired (`service:point`), from the last log line of each exit."""
    fired: Counter[str] = Counter()
    for log_file in sorted(layout.logs.glob("*.log")):
        service = log_file.stem.rsplit("-", 1)[0]
        for line in log_file.read_text(errors="replace").splitlines():
            if '"fault_point"' not in line:
                continue
            try:
                fired[f"{service}:{json.loads(line)['fault_point']}"] += 1
            except (ValueError, KeyError):
                continue  # a line cut short by the exit itself
    return dict(sorted(fired.items()))


def _counts(results: list[OrderResult], stats: Counter[str]) -> dict[str, Any]:
    cancelled = Counter(r.reason or "?" for r in results if r.state == "CANCELLED")
    return {
        "orders": len(results),
        "confirmed": sum(r.state == "CONFIRMED" for r in results),
        "cancelled": sum(cancelled.values()),
        "cancelled_by_reason": dict(sorted(cancelled.items())),
        "not_final_for_client": sum(r.state not in ("CONFIRMED", "CANCELLED") for r in results),
        "refused": dict(Counter(r.refused for r in results if r.refused)),
        "duplicates_sent": sum(r.sent_twice for r in results),
        "client_retries": sum(r.retries for r in results),
        "transport_errors": stats["transport_errors"],
        "rate_limited": stats["rate_limited"],
    }


def _scenario(
    shop: Shop, results: list[OrderResult], shop_account: str, shop_initial: int
) -> Scenario:
    answered: dict[str, set[str]] = {}
    for r in results:
        answered.setdefault(r.key, set()).update(canonical(o) for o in r.order_ids)
    return Scenario(
        initial_stock={p.id: p.initial_on_hand for p in shop.products},
        shop_account=shop_account,
        shop_initial_minor=shop_initial,
        deposits=dict(shop.deposits),
        answered=answered,
        client_saw={
            canonical(r.order_id): r.state
            for r in results
            if r.order_id and r.state in ("CONFIRMED", "CANCELLED")
        },
    )


async def _dead_letters(state: SystemState) -> list[dict[str, Any]]:
    if state.nats_url is None:
        return [{"consumer": "-", "reason": "the system runs no NATS"}]
    return [d.to_json() for d in await list_dead_letters(state.nats_url, limit=1000)]


async def run_shop_chaos(options: ShopChaosOptions, console: Console) -> dict[str, Any]:
    started = time.monotonic()
    report: dict[str, Any] = {
        "options": {**options.__dict__, "var_dir": str(options.var_dir)},
        "machine": machine(),
    }
    with scratch_system(
        database=options.database, shards=options.shards, instances=options.instances,
        var_dir=options.var_dir, keep=options.keep,
        env={"FLOTILLA_FAULTS": json.dumps(system_faults(options))}, console=console,
    ) as running:  # fmt: skip
        layout, state = running.layout, running.state
        report["options"]["var_dir"] = str(layout.root)
        tls = client_context(layout.tls / "ca.pem")
        async with httpx.AsyncClient(base_url=state.gateway_url, verify=tls, timeout=30) as client:
            with console.status("setting up the shop: products, customers, deposits"):
                shop = await set_up_shop(
                    client, running.password("ada"),
                    rich=options.rich_customers, poor=options.poor_customers,
                    rich_deposit_minor=options.rich_deposit_minor,
                    poor_deposit_minor=options.poor_deposit_minor,
                )  # fmt: skip
        urls, shard_urls = _database_urls(layout)
        shop_account = shop_account_id(options.shards)
        shop_initial = (await read_ledger(shard_urls)).balances.get(shop_account, 0)

        stop = asyncio.Event()
        duration_guess = max(10.0, options.orders / 8)
        rounds = [(options.kills, SHOP_VICTIMS), (options.billing_kills, ("billing",))]
        killers = [
            asyncio.create_task(
                kill_randomly(
                    layout.state_file,
                    kills=kills,
                    every_s=duration_guess / max(1, kills),
                    stop=stop,
                    seed=options.seed + n,
                    victims=victims,
                )
            )
            for n, (kills, victims) in enumerate(rounds)
            if kills > 0
        ]
        with console.status(f"{options.orders} orders, {options.kills} kills"):
            load_started = time.monotonic()
            results, stats = await run_orders(
                state.gateway_url, tls, shop, orders=options.orders,
                concurrency=options.concurrency, seed=options.seed,
                final_within_s=options.final_within_s, posted=stop,
            )  # fmt: skip
            load_s = time.monotonic() - load_started
            stop.set()
            killed: Counter[str] = sum((await asyncio.gather(*killers)), Counter())
        with console.status("waiting for the sagas, the relays and the consumers"):
            settle_s, settled = await _wait_until_settled(layout, options.settle_within_s)
        with console.status("reading every database"):
            facts = await read_shop(urls, shard_urls, await _dead_letters(state))
        invariants = check_shop_invariants(
            facts, _scenario(shop, results, shop_account, shop_initial)
        )
        final_state = SystemState.read(layout.state_file) or state
        report.update(
            {
                "invariants_hold": all(v["holds"] for v in invariants.values()),
                "invariants": invariants,
                "counts": {
                    **_counts(results, stats),
                    "orders_in_database": len(facts.orders),
                    "settled": settled,
                    "kills": dict(sorted(killed.items())),
                    "kills_total": sum(killed.values()),
                    "restarts": sum(i.restarts for i in final_state.instances),
                    "restarts_by_instance": {
                        i.name: i.restarts for i in final_state.instances if i.restarts
                    },
                    "faults_fired": faults_fired(layout),
                    "faults_fired_total": sum(faults_fired(layout).values()),
                    "events": {p: len(e) for p, e in facts.outbox.items()},
                    "invoices": sum(d.kind == "invoice" for d in facts.documents.values()),
                },
                "seconds": {
                    "load": round(load_s, 1),
                    "settle": round(settle_s, 1),
                    "total": round(time.monotonic() - started, 1),
                },
            }
        )
        return report
