"""`flotilla bench checkout` without a system: quantiles, order lines, outcomes, rows,
net CPU, the checkout-over-transfer comparison, the table, and one worker's operations
against a fake gateway (what is polled, what counts as done or as an error)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx
from rich.console import Console

from flotilla_cli.bench_checkout import (
    KINDS,
    BenchOptions,
    Outcome,
    PhaseResult,
    _Load,
    _Shop,
    compare,
    order_lines,
    order_outcome,
    poll_delays,
    quantile_ms,
    record,
    render,
)
from flotilla_cli.chaos.load import Bank, Customer


def test_quantiles_are_nearest_rank_below_in_milliseconds() -> None:
    ordered = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    assert quantile_ms(ordered, 0.5) == 50.0
    assert quantile_ms(ordered, 0.99) == 99.0
    assert quantile_ms([0.0042], 0.99) == 4.2
    assert quantile_ms([], 0.5) is None


def test_order_lines_are_one_to_three_distinct_products_one_unit_each() -> None:
    rng = random.Random(1)
    catalogue = [f"prd_{n}" for n in range(5)]
    sizes = set()
    for _ in range(200):
        lines = order_lines(rng, catalogue)
        ids = [line["product_id"] for line in lines]
        assert len(set(ids)) == len(ids)
        assert set(ids) <= set(catalogue)
        assert all(line["quantity"] == 1 for line in lines)
        sizes.add(len(lines))
    assert sizes == {1, 2, 3}
    assert order_lines(rng, ["only"]) == [{"product_id": "only", "quantity": 1}]


def test_polls_wait_50_ms_first_then_double_up_to_400_ms() -> None:
    delays = poll_delays()
    assert [next(delays) for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]


def test_only_a_confirmed_order_completes_anything_else_is_named_by_state_and_reason() -> None:
    assert order_outcome({"state": "CONFIRMED"}, 0.2, polls=1) == Outcome(0.2, polls=1)
    cancelled = order_outcome({"state": "CANCELLED", "reason": "out-of-stock"}, 0.2, polls=0)
    assert (cancelled.took_s, cancelled.error) == (None, "CANCELLED:out-of-stock")


def test_outcomes_are_recorded_as_latencies_errors_and_polls() -> None:
    result = PhaseResult("checkout", 8)
    record(result, Outcome(0.1))
    record(result, Outcome(0.3, polls=3))
    record(result, Outcome(None, "503", "first sample"))
    record(result, Outcome(None, "503", "second sample"))
    record(result, Outcome(None, "CANCELLED:out-of-stock", "x", polls=1))
    assert result.latencies_s == [0.1, 0.3]
    assert result.errors == {"503": 2, "CANCELLED:out-of-stock": 1}
    assert result.error_sample == "first sample"
    assert (result.polled, result.polls) == (2, 4)


def test_a_row_counts_rate_latency_and_cpu_per_operation_gross_and_net_of_idle() -> None:
    result = PhaseResult(
        "transfer", 8, latencies_s=[0.004, 0.001, 0.003, 0.002], seconds=2.0,
        system_cpu_s=1.0, idle_cores=0.25, client_cpu_s=0.02,
    )  # fmt: skip
    result.errors["429"] = 1
    assert result.summary() == {
        "kind": "transfer",
        "concurrency": 8,
        "done": 4,
        "per_s": 2.0,
        "p50_ms": 2.0,
        "p99_ms": 3.0,
        "errors": 1,
        "error_kinds": {"429": 1},
        "error_sample": None,
        "polled": 0,
        "polls": 0,
        "seconds": 2.0,
        "system_cpu_ms_per_op": 250.0,
        "system_cpu_ms_per_op_net": 125.0,  # (1.0 - 0.25 * 2.0) / 4
        "client_cpu_ms_per_op": 5.0,
    }


def test_an_empty_row_has_no_rate_latency_nor_cpu() -> None:
    summary = PhaseResult("checkout", 1, seconds=1.0, system_cpu_s=1.0, idle_cores=0.1).summary()
    assert (summary["per_s"], summary["p50_ms"], summary["system_cpu_ms_per_op_net"]) == (
        0.0,
        None,
        None,
    )


def _row(kind: str, concurrency: int, per_s: float, p50: float | None, cpu: float) -> Any:
    return {
        "kind": kind, "concurrency": concurrency, "per_s": per_s, "p50_ms": p50,
        "system_cpu_ms_per_op_net": cpu,
    }  # fmt: skip


def test_the_comparison_is_checkout_over_transfer_per_concurrency() -> None:
    rows = [
        _row("checkout", 1, 5.0, 200.0, 240.0),
        _row("transfer", 1, 20.0, 50.0, 60.0),
        _row("checkout", 8, 10.0, None, 100.0),  # nothing completed
        _row("transfer", 8, 40.0, 80.0, 50.0),
        _row("checkout", 32, 0.0, 300.0, 1.0),  # its transfer row is missing
    ]
    assert compare(rows) == {
        "1": {
            "throughput_checkout_transfer": 0.25,
            "p50_checkout_transfer": 4.0,
            "added_p50_ms": 150.0,
            "cpu_checkout_transfer": 4.0,
        },
        "8": {
            "throughput_checkout_transfer": 0.25,
            "p50_checkout_transfer": None,
            "added_p50_ms": None,
            "cpu_checkout_transfer": 2.0,
        },
        "32": {
            "throughput_checkout_transfer": None,
            "p50_checkout_transfer": None,
            "added_p50_ms": None,
            "cpu_checkout_transfer": None,
        },
    }


def test_customers_default_to_one_per_worker_of_the_highest_concurrency() -> None:
    assert BenchOptions(concurrency=(1, 8, 32)).customer_count == 32
    assert BenchOptions(concurrency=(2,), customers=5).customer_count == 5


def test_the_table_shows_every_row_the_comparison_errors_and_the_machine() -> None:
    checkout = PhaseResult("checkout", 2, [0.2] * 4, seconds=1.0, system_cpu_s=1.0,
                           idle_cores=0.2)  # fmt: skip
    record(checkout, Outcome(None, "CANCELLED:out-of-stock", "an order"))
    transfer = PhaseResult("transfer", 2, [0.05] * 16, seconds=1.0, system_cpu_s=1.0,
                           idle_cores=0.2)  # fmt: skip
    rows = [checkout.summary(), transfer.summary()]
    report = {
        "options": {"database": "sqlite", "shards": 2, "instances": 2, "seconds": 1.0},
        "idle_system_cpu_cores": 0.2,
        "rows": rows,
        "comparison": compare(rows),
        "payments_local_customers": 1,
        "payments_2pc_customers": 1,
        "timings_s": {"start_system": 20.0, "set_up": 2.0, "total": 30.0},
        "machine": {"cpus": 2},
    }
    console = Console(width=120, record=True)
    render(report, console)
    text = console.export_text()
    for label in KINDS.values():
        assert label in text
    assert "at 2: checkout/transfer throughput 0.25, p50 4.0x (+150.0 ms)" in text
    assert "checkout at 2: {'CANCELLED:out-of-stock': 1}, e.g. an order" in text
    assert "machine: {'cpus': 2}" in text


def _load(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[_Load, httpx.AsyncClient]:
    client = httpx.AsyncClient(base_url="https://gw", transport=httpx.MockTransport(handler))
    shop = _Shop(Bank([], 0), ["prd_1", "prd_2"], "acc_0_shop")
    return _Load(client, shop, random.Random(1)), client


_CUSTOMER = Customer("c", "token", ["acc_1_c"])


async def test_a_transfer_answered_202_is_polled_until_committed() -> None:
    states = iter(["committing", "committed"])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            return httpx.Response(
                202,
                json={"id": "t1", "state": "preparing"},
                headers={"Location": "/api/v1/transfers/t1"},
            )
        return httpx.Response(200, json={"id": "t1", "state": next(states)})

    load, client = _load(handler)
    async with client:
        outcome = await load.transfer(_CUSTOMER)
    assert outcome.took_s is not None
    assert outcome.polls == 2
    assert seen == ["POST /api/v1/transfers"] + ["GET /api/v1/transfers/t1"] * 2


async def test_an_aborted_transfer_and_a_refused_order_are_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/orders":
            return httpx.Response(422, json={"type": "unknown-product"})
        if request.method == "POST":
            return httpx.Response(202, json={"id": "t1", "state": "aborting"})
        return httpx.Response(200, json={"id": "t1", "state": "aborted", "refusal": "timeout"})

    load, client = _load(handler)
    async with client:
        aborted = await load.transfer(_CUSTOMER)
        refused = await load.checkout(_CUSTOMER)
    assert (aborted.took_s, aborted.error, aborted.polls) == (None, "aborted:timeout", 1)
    assert (refused.took_s, refused.error) == (None, "422")


async def test_a_pending_order_is_polled_and_its_answer_decides() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            bodies.append(json.loads(request.content))
            assert request.headers["Idempotency-Key"]
            return httpx.Response(
                202,
                json={"id": "o1", "state": "PENDING"},
                headers={"Location": "/api/v1/orders/o1"},
            )
        return httpx.Response(
            200, json={"id": "o1", "state": "CANCELLED", "reason": "out-of-stock"}
        )

    load, client = _load(handler)
    async with client:
        outcome = await load.checkout(_CUSTOMER)
    assert (outcome.error, outcome.polls) == ("CANCELLED:out-of-stock", 1)
    assert bodies[0]["payment_account"] == "acc_1_c"
    assert 1 <= len(bodies[0]["lines"]) <= 2  # the catalogue has two products
