"""The bank under SIGKILL and injected coordinator crashes: every invariant must hold.

Runs `flotilla chaos bank` as a user would; it starts its own system (2 shards x 2
instances, 2 coordinators, the gateway), sends concurrent transfers (same-shard and
cross-shard, some overdrawing, some sent twice with one Idempotency-Key), kills random
processes, crashes coordinators at their fault points, and reconciles the databases.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.system import RunningSystem

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_money_is_never_lost_nor_made_under_kill_9(tmp_path: Path) -> None:
    report_file = tmp_path / "chaos.json"
    system = RunningSystem(tmp_path / "var", gateway_url="")  # the run starts it
    try:
        result = system.flotilla(
            "chaos", "bank", "--transfers", "800", "--kills", "6", "--seed", "7",
            "--json", str(report_file), timeout=840,
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
    assert counts["transfers"] == 800
    assert counts["committed"] > 0
    assert counts["rejected"] > 0  # some overdrew on purpose
    assert counts["kills_total"] > 0
    assert result.returncode == 0
