"""`python -m flotilla_inventory`: every command's --help, an idempotent seed, and `serve`
as its own process (REST and gRPC over mutual TLS), stopped by a signal. Real processes:
the commands configure process-wide logging. SQLite only: the commands do not depend on
the backend, and a process start is slow."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from flotilla_kit.devservers import free_port
from flotilla_kit.rpc import bearer, secure_channel
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import client_context
from flotilla_proto.inventory.v1 import inventory_pb2 as pb
from flotilla_proto.inventory.v1 import inventory_pb2_grpc as pb_grpc

from .harness import TIMEOUT_S, Pki, tls_of

COMMANDS = ("serve", "migrate", "seed", "relay", "audit-verify", "audit-tail")


def inventory(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flotilla_inventory", *args],
        env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def test_help_lists_every_command() -> None:
    done = inventory("--help")
    assert done.returncode == 0, done.stderr
    for command in COMMANDS:
        assert command in done.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    done = inventory(command, "--help")
    assert done.returncode == 0, done.stderr
    assert f"Usage: python -m flotilla_inventory {command}" in done.stdout


def _seed(url: str, file: Path, products: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    file.write_text(json.dumps({"products": products}))
    return inventory("seed", "--file", str(file), env={"FLOTILLA_DATABASE_URL": url})


MUG = {"sku": "MUG-1", "name": "Mug", "price_minor": 1250, "currency": "EUR", "on_hand": 5}
CUP = {"sku": "CUP-1", "name": "Cup", "price_minor": 800, "currency": "EUR", "on_hand": 9}


def test_seed_is_idempotent_by_sku(sqlite_url: str, tmp_path: Path) -> None:
    first = _seed(sqlite_url, tmp_path / "seed.json", [MUG, CUP])
    assert first.returncode == 0, first.stderr
    seeded = json.loads(first.stdout)["products"]
    assert [(p["sku"], p["on_hand"], p["available"]) for p in seeded] == [
        ("MUG-1", 5, 5), ("CUP-1", 9, 9),
    ]  # fmt: skip
    # Again, with other stock for one of them: the product there is kept as it is.
    again = _seed(sqlite_url, tmp_path / "seed.json", [{**MUG, "on_hand": 50}, CUP])
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["products"] == seeded


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        ("{not json", 2, "not a seed file"),
        (json.dumps({"products": [{**MUG, "price_minor": 0}]}), 2, "not a seed file"),
        (json.dumps({"items": []}), 2, "not a seed file"),
        (json.dumps({"products": [{**MUG, "currency": "XYZ"}]}), 1, "unknown currency"),
    ],
)
def test_a_bad_seed_file_is_refused_without_a_traceback(
    sqlite_url: str, tmp_path: Path, content: str, status: int, message: str
) -> None:
    file = tmp_path / "seed.json"
    file.write_text(content)
    done = inventory("seed", "--file", str(file), env={"FLOTILLA_DATABASE_URL": sqlite_url})
    assert done.returncode == status, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_migrate_and_bad_settings(sqlite_url: str) -> None:
    done = inventory("migrate", env={"FLOTILLA_DATABASE_URL": sqlite_url})
    assert done.returncode == 0, done.stderr
    bad = inventory("migrate", env={"FLOTILLA_RESERVATION_HOLD_S": "soon"})
    assert bad.returncode == 2
    assert "FLOTILLA_RESERVATION_HOLD_S" in bad.stderr
    assert "Traceback" not in bad.stderr


def _running(process: asyncio.subprocess.Process) -> bool:
    return process.returncode is None


async def test_serve_runs_both_apis_over_mutual_tls_until_stopped(
    sqlite_url: str, tmp_path: Path, dev_pki: Pki
) -> None:
    """The service alone, as the launcher will start it: no auth service here, so the
    gRPC token check fails closed (no keys: UNAUTHENTICATED), which is also the check."""
    server, client = dev_pki("inventory"), dev_pki("orders")
    seeded = _seed(sqlite_url, tmp_path / "seed.json", [MUG])
    product_id = json.loads(seeded.stdout)["products"][0]["id"]
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "FLOTILLA_DATABASE_URL": sqlite_url, "FLOTILLA_PORT": str(port),
        "FLOTILLA_GRPC_PORT": str(grpc_port), "FLOTILLA_TLS_CERT_FILE": str(server.cert),
        "FLOTILLA_TLS_KEY_FILE": str(server.key), "FLOTILLA_TLS_CA_FILE": str(server.ca),
        "FLOTILLA_SWEEP_INTERVAL_S": "0.1",
    }  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flotilla_inventory", "serve",
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        context = client_context(client.ca, client.cert, client.key)
        url = f"https://127.0.0.1:{port}"
        async with httpx.AsyncClient(verify=context, timeout=5) as http:
            # Another process: poll its readiness, with a deadline.
            deadline = time.monotonic() + 30
            while True:
                assert _running(process), "serve exited early"
                try:
                    if (await http.get(f"{url}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "serve never became ready"
                await asyncio.sleep(0.1)
            product = await http.get(f"{url}/api/v1/products/{product_id}")
            assert (product.status_code, product.json()["sku"]) == (200, "MUG-1")
        async with secure_channel(f"127.0.0.1:{grpc_port}", tls_of(client)) as channel:
            stub = pb_grpc.InventoryStub(channel)
            token = TokenMinter().mint("orders", ["service:orders"])
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Release(
                    pb.ReservationRef(reservation_id="r1"),
                    metadata=bearer(token),
                    timeout=TIMEOUT_S,
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        process.send_signal(signal.SIGINT)
        stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    output = stdout.decode()
    # uvicorn re-raises the signal it stopped for once it is done: 130 is SIGINT's code.
    assert process.returncode in (0, 130), output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
