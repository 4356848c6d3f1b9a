"""The admin listener (`admin_port`): probes, metrics and the policy leave the client port."""

from __future__ import annotations

import httpx

from .harness import Stack

OPERATIONAL = ("/readyz", "/metrics", "/policy.json")


async def test_with_an_admin_port_the_client_port_no_longer_serves_operations(
    stack: Stack,
) -> None:
    await stack.upstream("auth")
    gateway = await stack.start_gateway(tls=True, admin_port=0)
    assert gateway.admin_port is not None
    assert gateway.admin_port != gateway.port
    async with stack.client() as public:
        hidden = {path: (await public.get(path)).status_code for path in OPERATIONAL}
        live = await public.get("/livez")
        routed = await public.post("/api/v1/auth/token", json={"username": "a", "password": "b"})
        docs = await public.get("/openapi.json")
    assert hidden == dict.fromkeys(OPERATIONAL, 404)
    assert (live.status_code, routed.status_code, docs.status_code) == (200, 200, 200)

    admin_url = f"https://127.0.0.1:{gateway.admin_port}"
    async with stack.client(base_url=admin_url) as admin:
        served = {path: await admin.get(path) for path in OPERATIONAL}
        not_routed = await admin.post("/api/v1/auth/token", json={})
    assert {path: r.status_code for path, r in served.items()} == dict.fromkeys(OPERATIONAL, 200)
    assert served["/readyz"].json()["status"] == "ready"
    # The client's request above is in the metrics read on the admin port.
    assert 'route="/api/v1/auth/token",status="200"} 1.0' in served["/metrics"].text
    assert not_routed.status_code == 404  # the admin port forwards nothing


async def test_without_an_admin_port_the_client_port_serves_everything(stack: Stack) -> None:
    await stack.upstream("auth")
    gateway = await stack.start_gateway()
    assert gateway.admin_port is None
    async with stack.client() as client:
        codes = {path: (await client.get(path)).status_code for path in OPERATIONAL}
    assert codes == dict.fromkeys(OPERATIONAL, 200)


async def test_the_admin_port_says_draining_while_clients_finish(stack: Stack) -> None:
    await stack.upstream("auth")
    gateway = await stack.start_gateway(admin_port=0)
    gateway.drain.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.admin_port}") as admin:
        ready = await admin.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["detail"] == "The gateway is shutting down; send no more."
