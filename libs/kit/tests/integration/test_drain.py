"""SIGTERM drains a service (`/readyz` says so, requests are still served); SIGINT does not."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from flotilla_kit.devservers import free_port
from flotilla_kit.problems import problem_type

_SERVICE = Path(__file__).with_name("drain_service.py")


class Running:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"

    async def next_log(self, message: str) -> None:
        """Read the service's JSON log lines until one with `message` (or the process ends)."""
        assert self.process.stdout is not None
        while line := await asyncio.wait_for(self.process.stdout.readline(), 30):
            if line.startswith(b"{") and json.loads(line).get("message") == message:
                return
        raise AssertionError(f"the service ended without logging {message!r}")

    async def until_ready(self, client: httpx.AsyncClient) -> None:
        async with asyncio.timeout(30):
            while True:
                try:
                    if (await client.get(f"{self.base}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)  # polling a port that is not open yet


@pytest.fixture
async def service() -> AsyncIterator[Running]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(_SERVICE),
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield Running(process, port)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigterm_drains_then_a_second_signal_stops(service: Running) -> None:
    async with httpx.AsyncClient() as client:
        await service.until_ready(client)
        service.process.send_signal(signal.SIGTERM)
        await service.next_log("draining")
        ready = await client.get(f"{service.base}/readyz")
        served = await client.get(f"{service.base}/api/v1/ping")
    assert ready.status_code == 503
    assert ready.json()["type"] == problem_type("draining")
    assert served.status_code == 200
    assert served.json() == {"pong": "yes"}
    # The drain would last a minute; a second signal ends it now. (uvicorn shuts down,
    # then raises the signal again so that the parent sees what ended the process.)
    service.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(service.process.wait(), 30) == -signal.SIGTERM


async def test_sigint_stops_without_draining(service: Running) -> None:
    async with httpx.AsyncClient() as client:
        await service.until_ready(client)
    service.process.send_signal(signal.SIGINT)
    # Well within the minute of drain a SIGTERM would have started.
    assert await asyncio.wait_for(service.process.wait(), 30) == -signal.SIGINT
