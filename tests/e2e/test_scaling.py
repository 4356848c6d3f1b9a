"""`flotilla scale` under load: inventory 2 -> 3 -> 1 while clients keep reading the catalogue
through the gateway. The new instance is ready and gets requests, the removed ones get
none after their drain began, and no request of the load fails."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from flotilla_kit.tls import client_context
from tests.e2e.system import RunningSystem, start_system

pytestmark = pytest.mark.e2e

CLIENTS = 4
PATH = "/api/v1/products"
# The load comes from one address: the per-IP limit must not be what it measures.
NO_IP_LIMIT = {"FLOTILLA_RATE_LIMIT_IP_RPS": "100000", "FLOTILLA_RATE_LIMIT_IP_BURST": "100000"}


@pytest.fixture(scope="module")
def system() -> Iterator[RunningSystem]:
    yield from start_system("sqlite", env=NO_IP_LIMIT)


@dataclass
class Load:
    """CLIENTS threads, each sending GETs one after another until stopped."""

    system: RunningSystem
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        verify = client_context(Path(self.system.ca))
        with httpx.Client(base_url=self.system.gateway_url, verify=verify, timeout=15) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(PATH)
                    outcome = None if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    if outcome is None:
                        self.ok += 1
                    else:
                        self.failed.append(outcome)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def _served(system: RunningSystem, instance: str) -> list[datetime]:
    """When the instance received each catalogue request it answered (its access log
    stamps the answer and gives the duration)."""
    times = []
    for line in (system.var_dir / "log" / f"{instance}.log").read_text().splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("message") == "request" and record.get("url", {}).get("path") == PATH:
            answered = datetime.fromisoformat(record["@timestamp"])
            times.append(answered - timedelta(microseconds=record["event"]["duration"] / 1000))
    return times


def _drain_began(system: RunningSystem, instance: str) -> datetime:
    for line in (system.var_dir / "log" / f"{instance}.log").read_text().splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("message") == "draining":
            return datetime.fromisoformat(record["@timestamp"])
    raise AssertionError(f"{instance} never drained")


def _inventory(system: RunningSystem) -> list[str]:
    return [
        i["name"]
        for i in system.status()["instances"]
        if i["service"] == "inventory" and i["command"] == "serve" and i["ready"]
    ]


def _until(condition: object, timeout_s: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_scale_up_and_down_under_load_fails_no_request(system: RunningSystem) -> None:
    assert _inventory(system) == ["inventory-0", "inventory-1"]
    started = time.monotonic()
    with Load(system) as load:
        _until(lambda: load.ok >= 20, 30, "the load to flow")

        up = system.flotilla("scale", "inventory", "3")
        assert up.returncode == 0, up.stdout + up.stderr
        assert _inventory(system) == ["inventory-0", "inventory-1", "inventory-2"]
        # Once `scale` returns the gateway has it: it gets its share of the load.
        _until(lambda: len(_served(system, "inventory-2")) >= 5, 20, "inventory-2's requests")
        at_three = load.ok

        down = system.flotilla("scale", "inventory", "1")
        assert down.returncode == 0, down.stdout + down.stderr
        assert _inventory(system) == ["inventory-0"]
        after = load.ok
        _until(lambda: load.ok >= after + 20, 30, "the load to go on with one instance")
    elapsed = time.monotonic() - started

    served = {name: _served(system, name) for name in ("inventory-0", "inventory-1", "inventory-2")}
    counts = Counter({name: len(times) for name, times in served.items()})
    print(
        f"\nscale inventory 2 -> 3 -> 1 under load ({CLIENTS} clients, {elapsed:.1f} s): "
        f"{load.ok} requests ok, {len(load.failed)} failed; {at_three} ok once inventory-2 "
        f"served its first, {after} once 3 -> 1 returned; served per instance: {dict(counts)}"
    )
    assert load.failed == [], load.failed[:5]
    assert counts["inventory-2"] > 0
    for removed in ("inventory-1", "inventory-2"):
        drain = _drain_began(system, removed)
        late = [t for t in served[removed] if t >= drain]
        assert late == [], f"{removed} served {len(late)} requests after its drain began"
    # The gateway's balancing sent the last requests to the one instance left.
    assert max(served["inventory-0"]) > max(served["inventory-1"] + served["inventory-2"])

    status = system.flotilla("status")
    assert status.returncode == 0
    assert "inventory" in status.stdout
    events = system.status()["scaling"]
    assert [(e["group"], e["from_count"], e["to_count"]) for e in events][-2:] == [
        ("inventory", 2, 3),
        ("inventory", 3, 1),
    ]


def test_bad_requests_are_refused_with_exit_2(system: RunningSystem) -> None:
    cases = {
        ("nothing", "2"): "unknown service",
        ("inventory", "0"): "between 1 and 16",
        ("inventory", "17"): "between 1 and 16",
        ("payments-relay", "2"): "relays are not scalable",
        ("gateway", "2"): "--gateways",
        ("inventory", "2", "--shard", "0"): "no shards",
        ("accounts", "2", "--shard", "2"): "shard must be between 0 and 1",
    }
    for args, message in cases.items():
        result = system.flotilla("scale", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)


def test_scaling_a_system_that_is_not_running_is_refused(tmp_path: Path) -> None:
    idle = RunningSystem(tmp_path, "https://127.0.0.1:1")
    result = idle.flotilla("scale", "inventory", "2")
    assert result.returncode == 2
    assert "not running" in result.stderr
