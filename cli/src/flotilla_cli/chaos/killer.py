"""SIGKILL at random moments: coordinators, ledger shards, the gateway (the bank), or
whichever services a run names (the shop: orders, inventory, payments and their relays)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from collections.abc import Collection
from pathlib import Path

from flotilla_cli.launcher.state import SystemState

__all__ = ["kill_randomly"]

VICTIMS = ("payments", "accounts", "gateway")


async def kill_randomly(
    state_file: Path,
    *,
    kills: int,
    every_s: float,
    stop: asyncio.Event,
    seed: int,
    victims: Collection[str] = VICTIMS,
) -> Counter[str]:
    """Kill up to `kills` processes of the `victims` services (their relays included), one
    every ~`every_s` seconds, until `stop` is set; counted by service, a relay by its name
    (`orders-relay`). The supervisor restarts each one; that restart is part of what is
    being tested."""
    rng = random.Random(seed)
    killed: Counter[str] = Counter()
    while sum(killed.values()) < kills and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), rng.uniform(0.5, 1.5) * every_s)
        except TimeoutError:
            pass
        else:
            break
        state = SystemState.read(state_file)
        if state is None:
            continue
        alive = [i for i in state.instances if i.service in victims and i.pid and i.ready]
        if not alive:
            continue
        victim = rng.choice(alive)
        try:
            os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
        except ProcessLookupError:
            continue
        killed[victim.name if victim.command == "relay" else victim.service] += 1
    return killed
