"""The shop under SIGKILL and injected saga crashes: every invariant must hold.

Runs `flotilla chaos shop` as a user would; it starts its own system (orders, inventory
and payments, two instances each, one outbox relay each, two ledger shards, the gateway,
NATS, billing), sends concurrent checkouts (some out of stock, some unaffordable, some sent twice
with one Idempotency-Key), kills random orders, inventory, payments and billing processes and
relays (billing at least twice: the invoices must come out one per confirmed order, numbered
without a gap), crashes orders instances at the saga's fault points, and reconciles the databases.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.system import RunningSystem

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ORDERS = 150


@pytest.mark.timeout(600)
def test_the_shop_neither_loses_nor_makes_stock_money_or_events_under_kill_9(
    tmp_path: Path,
) -> None:
    report_file = tmp_path / "chaos-shop.json"
    system = RunningSystem(tmp_path / "var", gateway_url="")  # the run starts it
    try:
        result = system.flotilla(
            "chaos", "shop", "--orders", str(ORDERS), "--kills", "6", "--fault-rate", "0.01",
            "--seed", "7", "--json", str(report_file), timeout=540,
        )  # fmt: skip
    finally:
        system.flotilla("down", timeout=60)  # whatever happened, leave nothing running
    print(result.stdout)  # the counts belong in the test log
    assert report_file.exists(), result.stdout + result.stderr
    report = json.loads(report_file.read_text())
    broken = {k: v for k, v in report["invariants"].items() if not v["holds"]}
    assert broken == {}
    assert report["invariants_hold"] is True
    counts = report["counts"]
    assert counts["orders"] == ORDERS
    assert counts["orders_in_database"] == ORDERS
    assert counts["confirmed"] > 0
    assert counts["cancelled"] > 0  # out of stock, or a poor customer
    assert counts["duplicates_sent"] > 0
    assert counts["kills_total"] > 0
    assert counts["kills"].get("billing", 0) > 0  # its instances, inbox consumers with them
    assert counts["invoices"] > 0  # one per confirmed order, numbered without a gap (above)
    assert counts["faults_fired_total"] + counts["kills_total"] > 0
    assert result.returncode == 0
