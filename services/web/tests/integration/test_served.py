"""`python -m flotilla_web serve` for real, as the launcher starts it: settings from the
environment (the gateway's URL and CA among them), migrations at start, the pages served,
a login through a stand-in gateway over verified TLS."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from flotilla_kit.devservers import free_port
from flotilla_kit.testing import TokenMinter, serving_keys
from flotilla_kit.tls import CertificatePaths
from services.web.tests.integration.conftest import PASSWORD, SESSION, csrf_of
from services.web.tests.integration.gateway import User, World, gateway_app, serving_https

_START_TIMEOUT_S = 30.0


@pytest.fixture
async def served(
    sqlite_url: str,
    tokens: TokenMinter,
    dev_pki: Callable[[str], CertificatePaths],
    tmp_path: Path,
) -> AsyncIterator[tuple[str, World]]:
    world = World(minter=tokens)
    world.users = {"alice": User("user-alice", PASSWORD, ["customer"])}
    world.open("user-alice", "Everyday", 10_000)
    certs = dev_pki("gateway")
    with serving_keys(tokens) as key_server:
        async with serving_https(gateway_app(world), certs) as gateway_url:
            port = free_port()
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("FLOTILLA_", "OTEL_"))},
                "PYTHONUNBUFFERED": "1",
                "FLOTILLA_PROFILE": "test",
                "FLOTILLA_PORT": str(port),
                "FLOTILLA_VAR_DIR": str(tmp_path),
                "FLOTILLA_DATABASE_URL": sqlite_url,
                "FLOTILLA_DRAIN_S": "0",
                "FLOTILLA_JWKS_URLS": json.dumps([f"{key_server}/jwks"]),
                "FLOTILLA_REVOCATION_URLS": json.dumps([f"{key_server}/revocations"]),
                "FLOTILLA_GATEWAY_URL": gateway_url,
                "FLOTILLA_GATEWAY_CA_FILE": str(certs.ca),
            }
            log = tmp_path / "web.log"
            with log.open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "flotilla_web",
                    "serve",
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            url = f"http://127.0.0.1:{port}"
            try:
                async with httpx.AsyncClient(timeout=1.0) as probe:
                    loop = asyncio.get_running_loop()
                    deadline = loop.time() + _START_TIMEOUT_S
                    # The process says nothing when it is ready: ask /readyz until it answers.
                    while True:
                        if process.returncode is not None:
                            raise RuntimeError(f"the service exited at start:\n{log.read_text()}")
                        try:
                            if (await probe.get(f"{url}/readyz")).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        if loop.time() > deadline:
                            raise RuntimeError(f"the service did not get ready:\n{log.read_text()}")
                        await asyncio.sleep(0.05)
                yield url, world
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def test_a_served_instance_logs_a_user_in_through_the_gateway(
    served: tuple[str, World],
) -> None:
    url, world = served
    # Plain HTTP here (behind the gateway the service is reached over mTLS, which this
    # test does not set up); the Secure cookies are sent back by hand.
    async with httpx.AsyncClient(base_url=url, timeout=10) as browser:
        form = await browser.get("/login")
        assert form.status_code == 200
        assert "default-src 'none'" in form.headers["content-security-policy"]
        answer = await browser.post(
            "/login",
            data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_of(form.text)},
            headers={"Cookie": f"__Host-flotilla_csrf={csrf_of(form.text)}"},
        )
        assert answer.status_code == 303, answer.text
        (set_cookie,) = [
            v for v in answer.headers.get_list("set-cookie") if v.startswith(f"{SESSION}=")
        ]
        cookie = set_cookie.split(";", 1)[0].split("=", 1)[1]
        page = await browser.get("/accounts", headers={"Cookie": f"{SESSION}={cookie}"})
        assert page.status_code == 200
        assert "100.00 EUR" in page.text
        assert (await browser.get("/static/app.css")).status_code == 200
    assert [c.path for c in world.calls] == ["/api/v1/auth/token", "/api/v1/accounts"]
