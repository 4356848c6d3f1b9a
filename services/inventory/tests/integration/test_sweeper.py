"""Expiry by the sweeper, on SQLite and PostgreSQL: a tick with a moved clock, and the
background loop of a running instance with the real clock."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from flotilla_kit.clock import ManualClock
from flotilla_kit.testing import TokenMinter

from .harness import Instance, running_inventory, stock_events

RESERVATIONS = "/internal/v1/reservations"


async def test_a_sweep_expires_holds_past_their_deadline(
    inventory: Instance, clock: ManualClock
) -> None:
    mug = await inventory.product(on_hand=10)
    await inventory.reserve_rest("short", (mug, 3), hold_s=20)
    await inventory.reserve_rest("long", (mug, 4), hold_s=200)
    clock.advance(19)
    assert await inventory.app.state.sweeper.tick() == 0
    clock.advance(1)
    assert await inventory.app.state.sweeper.tick() == 1
    assert await inventory.stock(mug) == (10, 4)
    short = await inventory.http.get(f"{RESERVATIONS}/short", headers=inventory.orders())
    assert short.json()["state"] == "expired"
    assert short.json()["lines"][0]["quantity"] == 3
    events = await stock_events(inventory.database)
    assert events[-1]["data"] == {
        "product_id": mug, "sku": "MUG-1", "on_hand": 10, "reserved": 4, "available": 6,
        "version": 4, "reason": "expired",
    }  # fmt: skip
    metrics = await inventory.http.get("/metrics")
    expired = [
        sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "flotilla_inventory_sweeper_expired_total"
    ]
    assert expired == [1.0]


async def test_a_backlog_is_swept_in_one_tick(
    database_url: str, tokens: TokenMinter, clock: ManualClock
) -> None:
    # A batch smaller than the backlog: one tick takes several batches.
    async with running_inventory(
        database_url, tokens=tokens, clock=clock, sweep_batch=3
    ) as inventory:
        mug = await inventory.product(on_hand=10)
        for i in range(8):
            await inventory.reserve_rest(f"r{i}", (mug, 1), hold_s=5)
        clock.advance(5)
        assert await inventory.app.state.sweeper.tick() == 8
        assert await inventory.stock(mug) == (10, 0)


async def test_the_running_sweeper_gives_stock_back_on_its_own(
    database_url: str, tokens: TokenMinter
) -> None:
    async with running_inventory(
        database_url, tokens=tokens, sweep_in_background=True, sweep_interval_s=0.05
    ) as instance:
        mug = await instance.product(on_hand=5)
        held = await instance.reserve_rest("soon", (mug, 2), hold_s=1)
        assert held.json()["state"] == "held"
        assert await instance.stock(mug) == (5, 2)
        # Another actor's work (the background task) is awaited by polling its effect,
        # with a deadline: a hold of one second, swept within a few more.
        deadline = time.monotonic() + 10
        while await instance.stock(mug) != (5, 0):
            assert time.monotonic() < deadline, "the sweeper never expired the hold"
            await asyncio.sleep(0.05)
        read = await instance.http.get(f"{RESERVATIONS}/soon", headers=instance.orders())
        assert read.json()["state"] == "expired"
