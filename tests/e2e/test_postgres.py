"""The same system on PostgreSQL: `flotilla up --db postgres` starts an embedded server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.system import RunningSystem, alive, start_system

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pg_system() -> Iterator[RunningSystem]:
    yield from start_system("postgres")


def test_the_system_runs_on_postgres(pg_system: RunningSystem) -> None:
    status = pg_system.status()
    assert status["database"] == "postgres"
    assert status["postgres_pid"]
    assert all(i["ready"] for i in status["instances"])


def test_login_read_and_write_through_the_gateway(pg_system: RunningSystem) -> None:
    alice = {"Authorization": f"Bearer {pg_system.token('alice')}"}
    with pg_system.client() as client:
        listed = client.get("/api/v1/accounts", headers=alice)
        assert listed.status_code == 200
        assert len(listed.json()["items"]) == 2
        opened = client.post(
            "/api/v1/accounts", json={"name": "On PostgreSQL", "currency": "EUR"}, headers=alice
        )
        assert opened.status_code == 201
        again = client.get(f"/api/v1/accounts/{opened.json()['id']}", headers=alice)
        assert again.json()["name"] == "On PostgreSQL"


def test_a_transfer_across_shards_commits_on_postgres(pg_system: RunningSystem) -> None:
    """Each ledger shard is its own PostgreSQL database; 2PC spans the two."""
    sam = {"Authorization": f"Bearer {pg_system.token('sam')}"}
    alice = {"Authorization": f"Bearer {pg_system.token('alice')}"}
    with pg_system.client() as client:

        def everyday(username: str) -> dict[str, Any]:
            listed = client.get(
                "/api/v1/accounts", params={"owner_id": pg_system.user_id(username)}, headers=sam
            )
            account: dict[str, Any] = next(
                a for a in listed.json()["items"] if a["name"] == "Everyday"
            )
            return account

        source, destination = everyday("alice"), everyday("carol")
        sent = client.post(
            "/api/v1/transfers",
            json={
                "from_account": source["id"],
                "to_account": destination["id"],
                "amount_minor": 700,
                "currency": "EUR",
            },
            headers={**alice, "Idempotency-Key": "pg-e2e-1"},
        )
        assert sent.status_code == 201, sent.text
        assert (sent.json()["path"], sent.json()["state"]) == ("2pc", "committed")
        assert everyday("alice")["balance_minor"] == source["balance_minor"] - 700
        assert everyday("carol")["balance_minor"] == destination["balance_minor"] + 700


def test_down_stops_every_process_and_postgres(pg_system: RunningSystem) -> None:
    # Runs last in this module: the fixture's own `down` then has nothing left to do.
    status = pg_system.status()
    pids = [status["supervisor_pid"], status["postgres_pid"]]
    pids += [i["pid"] for i in status["instances"]]
    assert pg_system.flotilla("down").returncode == 0
    assert [pid for pid in pids if alive(pid)] == []
    assert pg_system.flotilla("status").returncode == 1
