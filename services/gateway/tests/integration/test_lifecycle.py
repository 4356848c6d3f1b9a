"""Stopping gracefully, and the command line as the launcher runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from flotilla_kit.problems import problem_type

from .harness import ECHO_POLICY, Stack


async def test_stop_lets_requests_in_flight_finish(stack: Stack) -> None:
    upstream = await stack.upstream("auth")
    gateway = await stack.start_gateway(policy=ECHO_POLICY)
    port = gateway.port
    async with stack.client() as client:
        held = asyncio.ensure_future(client.get("/api/v1/auth/x/slow"))
        await asyncio.wait_for(upstream.entered_event.wait(), 5)
        stopping = asyncio.ensure_future(gateway.stop())
        await asyncio.wait_for(gateway.stopping.wait(), 5)

        with pytest.raises(OSError, match=r"refused|Connect"):
            await asyncio.open_connection("127.0.0.1", port)
        assert not stopping.done()  # still waiting for the request in flight

        upstream.release.set()
        response = await held
        await stopping
    assert response.status_code == 200
    assert response.headers["connection"] == "close"
    assert all(i.in_flight == 0 for i in stack.registry.instances())
    stack.gateway = None  # already stopped


async def test_help_works() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flotilla_gateway",
        "--help",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert b"serve" in out


async def _next_record(stdout: asyncio.StreamReader, message: str) -> dict[str, Any]:
    while True:
        line = await asyncio.wait_for(stdout.readline(), 30)
        assert line, f"the gateway exited before logging {message!r}"
        record: dict[str, Any] = json.loads(line)
        assert record["service"]["name"] == "gateway"
        if record["message"] == message:
            return record


async def _serve_process(stack: Stack, tmp_path: Path) -> asyncio.subprocess.Process:
    """The gateway as the launcher runs it: its own process, settings from the environment."""
    env = {
        **os.environ,
        "FLOTILLA_HOST": "127.0.0.1",
        "FLOTILLA_PORT": "0",
        "FLOTILLA_INSTANCE_ID": "3",
        "FLOTILLA_TOPOLOGY_FILE": str(stack.topology_file),
        "FLOTILLA_HEALTH_INTERVAL_S": "0.05",
        "FLOTILLA_HEALTH_IDLE_INTERVAL_S": "0.05",
        "FLOTILLA_LOG_LEVEL": "info",
        # Long: a test that waits for the drain to end by itself would time out.
        "FLOTILLA_DRAIN_S": "60",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flotilla_gateway",
        "serve",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_serve_logs_ecs_json_and_drains_on_sigterm(stack: Stack, tmp_path: Path) -> None:
    await stack.upstream("auth")
    process = await _serve_process(stack, tmp_path)
    try:
        assert process.stdout is not None
        url = (await _next_record(process.stdout, "gateway listening"))["url"]["full"]
        await _next_record(process.stdout, "instance health changed")
        async with httpx.AsyncClient() as client:
            live = await client.get(f"{url}/livez")
            proxied = await client.get(
                f"{url}/.well-known/jwks.json", headers={"X-Request-Id": "ecs-1"}
            )
        assert live.status_code == 200
        assert proxied.status_code == 200

        access = await _next_record(process.stdout, "request")
        assert access["service"]["node"]["name"] == "gateway-3"
        assert access["http"]["request"] == {"method": "GET", "id": "ecs-1"}
        assert access["http"]["response"]["status_code"] == 200
        assert access["http"]["route"] == "/.well-known/jwks.json"
        assert access["url"]["path"] == "/.well-known/jwks.json"
        assert access["event"]["duration"] > 0
        assert len(access["trace"]["id"]) == 32
        assert access["upstream"]["instance"] == "auth-0"
        assert access["user"]["id"] is None
        assert access["client"]["ip"] == "127.0.0.1"

        # SIGTERM drains: `/readyz` turns away load balancers, requests are still served.
        process.send_signal(signal.SIGTERM)
        await _next_record(process.stdout, "draining")
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"{url}/readyz")
            still_served = await client.get(f"{url}/.well-known/jwks.json")
        assert ready.status_code == 503
        assert ready.json()["type"] == problem_type("draining")
        assert still_served.status_code == 200
        # A second signal ends the drain (of a minute, here) at once.
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigint_stops_without_draining(stack: Stack, tmp_path: Path) -> None:
    await stack.upstream("auth")
    process = await _serve_process(stack, tmp_path)
    try:
        assert process.stdout is not None
        await _next_record(process.stdout, "gateway listening")
        process.send_signal(signal.SIGINT)
        # Well within the 60 s drain it would have done after a SIGTERM.
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
