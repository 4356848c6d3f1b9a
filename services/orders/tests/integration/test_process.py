"""`python -m flotilla_orders serve` as a real process, over HTTPS with client
certificates, against the stand-ins: a fault point ends it like `kill -9` (status 137)
right after payments answered; started again on the same database, it finishes the order
by itself (leases of its previous life released, recovery at start), paying once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from flotilla_kit.devservers.ports import free_port
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import client_context
from services.orders.tests.integration.conftest import ORDERS, Pki, World, order_body

pytestmark = pytest.mark.slow


def environment(
    world: World, dev_pki: Pki, database_url: str, port: int, **extra: str
) -> dict[str, str]:
    certs = dev_pki("orders")
    return {
        **os.environ,
        "FLOTILLA_PROFILE": "test",
        "FLOTILLA_INSTANCE_ID": "o-0",
        "FLOTILLA_PORT": str(port),
        "FLOTILLA_DATABASE_URL": database_url,
        "FLOTILLA_TLS_CERT_FILE": str(certs.cert),
        "FLOTILLA_TLS_KEY_FILE": str(certs.key),
        "FLOTILLA_TLS_CA_FILE": str(certs.ca),
        "FLOTILLA_JWKS_URLS": json.dumps([world.auth_url + "/.well-known/jwks.json"]),
        "FLOTILLA_AUTH_TOKEN_URLS": json.dumps([world.auth_url + "/api/v1/auth/token"]),
        "FLOTILLA_INVENTORY_TARGETS": json.dumps(world.inventory_targets),
        "FLOTILLA_PAYMENTS_URLS": json.dumps(world.payments_urls),
        "FLOTILLA_ACCOUNTS_SHARDS": json.dumps(world.accounts_shards),
        "FLOTILLA_SHOP_ACCOUNT": world.shop,
        "FLOTILLA_HISTORY_CONSUMERS": "false",
        "FLOTILLA_RECOVERY_INTERVAL_S": "0.2",
        "FLOTILLA_ANSWER_WITHIN_S": "10",
        "FLOTILLA_DRAIN_S": "0",
        "FLOTILLA_LOG_LEVEL": "warning",
        **extra,
    }


@asynccontextmanager
async def https_client(dev_pki: Pki, port: int) -> AsyncIterator[httpx.AsyncClient]:
    certs = dev_pki("gateway")
    context = client_context(certs.ca, certs.cert, certs.key)
    async with httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{port}", verify=context, timeout=20
    ) as client:
        yield client


async def until_ready(client: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    """Poll the other process's /readyz, up to a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"the service exited with {process.returncode}")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the service did not become ready")


async def start(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flotilla_orders", "serve", env=env, stdout=out, stderr=out
        )


async def test_a_killed_process_finishes_the_order_once_started_again(
    world: World, dev_pki: Pki, tokens: TokenMinter, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "orders.log"
    alice = {"Authorization": f"Bearer {tokens.mint('alice', ['customer'])}"}
    dying = await start(
        environment(world, dev_pki, database_url, port, FLOTILLA_FAULTS='{"after_pay_call": 1.0}'),
        log,
    )
    async with https_client(dev_pki, port) as client:
        await until_ready(client, dying)
        with pytest.raises(httpx.TransportError):  # it dies while the request waits
            await client.post(
                ORDERS, json=order_body(world), headers={**alice, "Idempotency-Key": "o-1"}
            )
        assert await asyncio.wait_for(dying.wait(), 30) == 137, log.read_text()
    assert "fault injected" in log.read_text()
    assert len(world.bank.applied) == 1  # paid; the process died before recording it

    again = await start(environment(world, dev_pki, database_url, port), log)
    try:
        async with https_client(dev_pki, port) as client:
            await until_ready(client, again)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            order: dict[str, Any] = {}
            while loop.time() < deadline:  # the restarted process's recovery at work
                listed = (await client.get(ORDERS, headers=alice)).json()["items"]
                order = listed[0] if listed else {}
                if order.get("state") == "CONFIRMED":
                    break
                await asyncio.sleep(0.1)
            assert order.get("state") == "CONFIRMED", (order, log.read_text())
    finally:
        again.send_signal(signal.SIGINT)
        await asyncio.wait_for(again.wait(), 30)
    # A graceful stop: uvicorn finishes, then exits with the status of the signal it got.
    assert again.returncode == 128 + signal.SIGINT, log.read_text()
    assert len(world.bank.applied) == 1  # the same key again: paid exactly once
    assert order["payment_transfer_id"] == world.bank.applied[0]
    assert world.stock.commits == [order["id"]]
