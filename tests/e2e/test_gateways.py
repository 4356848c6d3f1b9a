"""Two gateways in front of the same services (`flotilla up --gateways 2`): either serves,
they share each identity's rate-limit budget through the embedded Valkey, and one killed
with SIGKILL leaves the other serving until the supervisor brings it back."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flotilla_kit.tls import client_context
from tests.e2e.system import RunningSystem, alive, start_system

pytestmark = pytest.mark.e2e
BURST = 6  # per identity, shared by both gateways; nothing refills during the test


@pytest.fixture(scope="module")
def system() -> Iterator[RunningSystem]:
    yield from start_system(
        "sqlite",
        gateways=2,
        env={"FLOTILLA_RATE_LIMIT_IDENTITY_RPS": "0.001",
             "FLOTILLA_RATE_LIMIT_IDENTITY_BURST": str(BURST)},
    )  # fmt: skip


def _gateways(system: RunningSystem) -> list[httpx.Client]:
    urls = system.instance_urls("gateway")
    assert len(urls) == 2
    return [
        httpx.Client(base_url=url, verify=client_context(Path(system.ca)), timeout=10)
        for url in urls
    ]


def test_both_gateways_are_ready_and_valkey_runs(system: RunningSystem) -> None:
    status = system.status()
    assert status["valkey_pid"]
    assert alive(status["valkey_pid"])
    for client in _gateways(system):
        with client:
            assert client.get("/readyz").status_code == 200


def test_an_identitys_budget_is_shared_by_both_gateways(system: RunningSystem) -> None:
    alice = {"Authorization": f"Bearer {system.token('alice')}"}
    first, second = _gateways(system)
    with first, second:
        answers = [
            (first if n % 2 == 0 else second).get("/api/v1/accounts", headers=alice)
            for n in range(BURST + 2)
        ]
    statuses = [a.status_code for a in answers]
    # Alone, each gateway would have let BURST through; together they let BURST through.
    assert statuses == [200] * BURST + [429, 429]
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert '"identity";r=0' in refused.headers["ratelimit"]
    assert '"identity";q=6' in answers[0].headers["ratelimit-policy"]


def test_a_killed_gateway_leaves_the_other_serving(system: RunningSystem) -> None:
    before = {i["name"]: i for i in system.status()["instances"]}
    victim = before["gateway-1"]
    os.kill(victim["pid"], signal.SIGKILL)
    first, second = _gateways(system)
    with first:
        for _ in range(5):
            assert first.get("/readyz").status_code == 200
    deadline = time.monotonic() + 30
    while True:  # another process's state: poll it
        now = {i["name"]: i for i in system.status()["instances"]}["gateway-1"]
        if now["ready"] and now["pid"] != victim["pid"]:
            break
        assert time.monotonic() < deadline, "gateway-1 was not restarted"
        time.sleep(0.25)
    with second:
        assert second.get("/readyz").status_code == 200


def test_down_stops_valkey_too(system: RunningSystem) -> None:
    status = system.status()
    assert system.flotilla("down").returncode == 0
    assert not alive(status["valkey_pid"])
