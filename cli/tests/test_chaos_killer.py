"""The killer SIGKILLs only the services it is given (their relays included) and counts a
relay by its name, so that a run's report says which kind of process died."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from flotilla_cli.chaos.killer import kill_randomly
from flotilla_cli.launcher.state import InstanceState, SystemState, write_atomically


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"])  # a stand-in for an instance


def test_only_the_named_services_die_and_a_relay_is_counted_by_its_name(tmp_path: Path) -> None:
    relay, gateway = _sleeper(), _sleeper()
    try:
        state = SystemState(
            phase="running", supervisor_pid=1, gateway_url="", database="sqlite",
            started_at=time.time(),
            instances=[
                InstanceState(service="orders", name="orders-relay", port=0, url="",
                              command="relay", pid=relay.pid, ready=True),
                InstanceState(service="gateway", name="gateway-0", port=1, url="https://x",
                              pid=gateway.pid, ready=True),
            ],
        )  # fmt: skip
        state_file = tmp_path / "state.json"
        write_atomically(state_file, state.model_dump_json())
        killed = asyncio.run(
            kill_randomly(
                state_file, kills=1, every_s=0.01, stop=asyncio.Event(), seed=3,
                victims=("orders",),
            )
        )  # fmt: skip
        assert dict(killed) == {"orders-relay": 1}
        assert relay.wait(timeout=10) == -9
        assert gateway.poll() is None
    finally:
        for process in (relay, gateway):
            process.kill()
            process.wait()
