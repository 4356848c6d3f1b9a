"""SIGKILL at random moments: coordinators, ledger shards, the gateway."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from pathlib import Path

from flotilla_cli.state import SystemState

__all__ = ["kill_randomly"]

VICTIMS = ("payments", "accounts", "gateway")


async def kill_randomly(
    state_file: Path, *, kills: int, every_s: float, stop: asyncio.Event, seed: int
) -> Counter[str]:
    """Kill up to `kills` processes, one every ~`every_s` seconds, until `stop` is set.
    The supervisor restarts each one; that restart is part of what is being tested."""
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
        alive = [i for i in state.instances if i.service in VICTIMS and i.pid and i.ready]
        if not alive:
            continue
        victim = rng.choice(alive)
        try:
            os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
        except ProcessLookupError:
            continue
        killed[victim.service] += 1
    return killed
