"""End to end, through the gateway over TLS, against `flotilla up --detach --instances 2`."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter

import pytest

from flotilla_kit.sharding import home_shard
from tests.e2e.system import RunningSystem, alive

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"


def _wait_for(condition: object, timeout_s: float = 30.0) -> None:
    """Poll a state we cannot subscribe to (another process's) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_every_instance_is_ready(system: RunningSystem) -> None:
    status = system.status()
    assert status["running"] is True
    assert status["phase"] == "running"
    names = sorted(i["name"] for i in status["instances"])
    assert status["shards"] == 2
    assert names == [
        "accounts-s0-0", "accounts-s0-1", "accounts-s1-0", "accounts-s1-1",
        "auth-0", "auth-1", "billing-0", "billing-1", "billing-relay",
        "gateway-0", "inventory-0", "inventory-1", "inventory-relay",
        "orders-0", "orders-1", "orders-relay", "payments-0", "payments-1", "payments-relay",
        "web-0", "web-1",
    ]  # fmt: skip
    assert all(i["ready"] and i["pid"] for i in status["instances"])
    with system.client() as client:
        assert client.get("/readyz").status_code == 200


def test_a_customer_logs_in_and_reads_their_accounts(system: RunningSystem) -> None:
    token = system.token("alice")
    with system.client() as client:
        anonymous = client.get("/api/v1/accounts")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == PROBLEM
        assert anonymous.headers["www-authenticate"].startswith("Bearer")

        mine = client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {token}"})
        assert mine.status_code == 200
        accounts = mine.json()["items"]
        assert {(a["name"], a["balance_minor"]) for a in accounts} == {
            ("Everyday", 250_000),
            ("Savings", 1_000_000),
        }


def test_wrong_password_and_bad_input_get_problems(system: RunningSystem) -> None:
    with system.client() as client:
        wrong = client.post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": "alice", "password": "nope"},
        )
        assert wrong.status_code == 400
        assert wrong.headers["content-type"] == PROBLEM
        token = system.token("alice")
        bad = client.post(
            "/api/v1/accounts",
            json={"name": "x", "currency": "XYZ"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert bad.status_code == 422
        assert bad.json()["type"].endswith("/validation-error")


def test_customers_cannot_see_each_others_accounts(system: RunningSystem) -> None:
    alice = {"Authorization": f"Bearer {system.token('alice')}"}
    bob = {"Authorization": f"Bearer {system.token('bob')}"}
    with system.client() as client:
        opened = client.post(
            "/api/v1/accounts",
            json={"name": f"e2e-{uuid.uuid4().hex[:6]}", "currency": "EUR"},
            headers={**alice, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert opened.status_code == 201
        account_id = opened.json()["id"]
        assert client.get(f"/api/v1/accounts/{account_id}", headers=alice).status_code == 200
        assert client.get(f"/api/v1/accounts/{account_id}", headers=bob).status_code == 404


def test_request_id_reaches_the_service_log(system: RunningSystem) -> None:
    request_id = f"e2e-{uuid.uuid4().hex}"
    token = system.token("alice")
    with system.client() as client:
        response = client.get(
            "/api/v1/accounts",
            headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id},
        )
    assert response.headers["x-request-id"] == request_id

    def logged_by_accounts() -> bool:
        out = system.flotilla("logs", "--service", "accounts", "--request", request_id, "--json")
        return '"accounts-' in out.stdout  # service.node.name of the instance that served it

    _wait_for(logged_by_accounts, 10)


def _alices_shard(system: RunningSystem) -> int:
    return home_shard(system.user_id("alice"), system.status()["shards"])


def test_requests_are_spread_over_both_instances(system: RunningSystem) -> None:
    token = system.token("alice")
    first, second = (f"accounts-s{_alices_shard(system)}-{i}" for i in (0, 1))
    marker = f"spread-{uuid.uuid4().hex}"
    with system.client() as client:
        for n in range(40):
            response = client.get(
                "/api/v1/accounts",
                headers={"Authorization": f"Bearer {token}", "X-Request-Id": f"{marker}-{n}"},
            )
            assert response.status_code == 200
    served: Counter[str] = Counter()
    logs = system.flotilla("logs", "--service", "accounts", "--lines", "0", "--json").stdout
    for line in logs.splitlines():
        record = json.loads(line)
        if str(record.get("http", {}).get("request", {}).get("id", "")).startswith(marker):
            served[record["service"]["node"]["name"]] += 1
    # Only the instances of alice's shard hold her accounts; the gateway spreads over both.
    assert served[first] + served[second] == 40
    assert served[first] > 0
    assert served[second] > 0


def test_a_killed_instance_is_restarted_and_traffic_keeps_flowing(system: RunningSystem) -> None:
    before = {i["name"]: i for i in system.status()["instances"]}
    name = f"accounts-s{_alices_shard(system)}-1"
    victim = before[name]
    os.kill(victim["pid"], signal.SIGKILL)
    token = system.token("alice")
    with system.client() as client:
        for _ in range(20):
            response = client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200

    def restarted() -> bool:
        now = {i["name"]: i for i in system.status()["instances"]}[name]
        return bool(
            now["ready"]
            and now["pid"] != victim["pid"]
            and now["restarts"] == victim["restarts"] + 1
        )

    _wait_for(restarted, 30)


def _served_by(system: RunningSystem, instance: str, outcome: str = "response") -> float:
    """Attempts the gateway sent to `instance` that ended in `outcome` (`response` or
    `error`), from its /metrics."""
    with system.client() as client:
        text = client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("flotilla_gateway_upstream_requests_total{")
        and f'instance="{instance}"' in line
        and f'outcome="{outcome}"' in line
    )


def test_requests_flowing_through_a_kill_9_all_succeed(system: RunningSystem) -> None:
    """Reads in flight while an instance dies: each one that fails there is retried on the
    other instance; the restarted instance gets traffic again."""
    token = system.token("alice")
    name = f"accounts-s{_alices_shard(system)}-0"
    victim = {i["name"]: i for i in system.status()["instances"]}[name]
    statuses: list[int] = []
    stop = threading.Event()

    def flood() -> None:
        with system.client() as client:
            while not stop.is_set():
                response = client.get(
                    "/api/v1/accounts", headers={"Authorization": f"Bearer {token}"}
                )
                statuses.append(response.status_code)
                # A steady flow below alice's rate limit (50/s): 4 workers x ~10/s.
                stop.wait(0.1)

    workers = [threading.Thread(target=flood) for _ in range(4)]
    errors_before = _served_by(system, name, "error")
    for worker in workers:
        worker.start()
    try:
        _wait_for(lambda: len(statuses) >= 40)
        os.kill(victim["pid"], signal.SIGKILL)

        def restarted() -> bool:
            now = {i["name"]: i for i in system.status()["instances"]}[name]
            return bool(now["ready"] and now["pid"] != victim["pid"])

        _wait_for(restarted, 30)
        after_restart = _served_by(system, name)
        _wait_for(lambda: _served_by(system, name) > after_restart, 30)  # re-admitted
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert len(statuses) > 40
    assert Counter(statuses) == {200: len(statuses)}
    # The flow did meet the dead instance: attempts to it failed, and were retried (all
    # 200 above). Whether the gateway also took it out depends on how long the restart
    # took: under `unhealthy_after` health-check periods, and under `eject_after`
    # failures (a failed attempt weighs the instance down, so the next ones go to the
    # other instance), it never needs to. If it did take it out, it let it back in.
    assert _served_by(system, name, "error") > errors_before
    taken_out, let_in = _gateway_verdicts(system, name)
    assert not taken_out or let_in, "the gateway never let the restarted instance back in"


def _gateway_verdicts(system: RunningSystem, instance: str) -> tuple[list[str], list[str]]:
    """What the gateway's log says it did with `instance`: taken out, and let back in."""
    result = system.flotilla("logs", "--service", "gateway", "--json", "--lines", "0")
    taken_out: list[str] = []
    let_in: list[str] = []
    for line in result.stdout.splitlines():
        record = json.loads(line)
        upstream = record.get("upstream") or {}  # ECS nests dotted keys
        if upstream.get("instance") != instance:
            continue
        message, healthy = record["message"], upstream.get("healthy")
        if message == "instance ejected" or (message == "instance health changed" and not healthy):
            taken_out.append(record["@timestamp"])
        elif message == "instance re-admitted" or (
            message == "instance health changed" and healthy
        ):
            let_in.append(record["@timestamp"])
    # Admitted once at start, then out, then in again.
    return taken_out, [moment for moment in let_in if taken_out and moment > taken_out[0]]


def test_the_demo_walkthrough_succeeds(system: RunningSystem) -> None:
    result = system.flotilla("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Every answer was as expected" in result.stdout


def test_down_stops_every_process(system: RunningSystem) -> None:
    # Runs last in this module: the fixture's own `down` then has nothing left to do.
    status = system.status()
    pids = [status["supervisor_pid"], *(i["pid"] for i in status["instances"])]
    assert system.flotilla("down").returncode == 0
    assert [pid for pid in pids if alive(pid)] == []
    assert system.flotilla("status").returncode == 1
