"""`python -m flotilla_accounts seed` places accounts on their owners' home shard only.
(A real process: the command configures process-wide logging. SQLite only: placement does
not depend on the backend, and a process start is slow.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .harness import owner_on


def seed(
    database_url: str, file: Path, accounts: list[dict[str, object]]
) -> subprocess.CompletedProcess[str]:
    file.write_text(json.dumps({"accounts": accounts}))
    env = {
        **os.environ,
        "FLOTILLA_DATABASE_URL": database_url,
        "FLOTILLA_SHARD": "1",
        "FLOTILLA_SHARDS": "2",
    }
    return subprocess.run(
        [sys.executable, "-m", "flotilla_accounts", "seed", "--file", str(file)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_seed_refuses_an_owner_of_another_shard(sqlite_url: str, tmp_path: Path) -> None:
    here, elsewhere = owner_on(1, 2), owner_on(0, 2)
    account = {"owner_id": here, "name": "A", "currency": "EUR", "balance_minor": 5}
    done = seed(sqlite_url, tmp_path / "seed.json", [account])
    assert done.returncode == 0, done.stderr
    [created] = json.loads(done.stdout)["accounts"]
    assert created["id"].startswith("acc_1_")
    assert created["balance_minor"] == 5

    refused = seed(sqlite_url, tmp_path / "seed.json", [{**account, "owner_id": elsewhere}])
    assert refused.returncode == 1
    assert "live on shard 0" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_seed_keeps_an_id_fixed_in_advance_and_refuses_one_of_another_shard(
    sqlite_url: str, tmp_path: Path
) -> None:
    fixed = "acc_1_" + "ab" * 16
    account: dict[str, object] = {
        "owner_id": owner_on(1, 2), "name": "Shop", "currency": "EUR", "id": fixed,
    }  # fmt: skip
    first = seed(sqlite_url, tmp_path / "seed.json", [account])
    again = seed(sqlite_url, tmp_path / "seed.json", [account])
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert [a["id"] for a in json.loads(first.stdout)["accounts"]] == [fixed]
    assert json.loads(again.stdout) == json.loads(first.stdout)  # found, not opened twice

    elsewhere: dict[str, object] = {**account, "name": "Other", "id": "acc_0_" + "cd" * 16}
    refused = seed(sqlite_url, tmp_path / "seed.json", [elsewhere])
    assert refused.returncode == 1
    assert "is not an account id of shard 1" in refused.stderr
    assert "Traceback" not in refused.stderr
