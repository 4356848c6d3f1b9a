"""The service-to-service HTTP client against real servers: uvicorn over mutual TLS, and
raw asyncio servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flotilla_kit.context import RequestContext, reset_context, set_context
from flotilla_kit.devservers import free_port
from flotilla_kit.http_client import (
    HttpClient,
    HttpConnectFailed,
    HttpProtocolError,
    HttpTimedOut,
)
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing import running_server
from flotilla_kit.tls import CertificatePaths, client_context
from flotilla_kit.tracing import install_tracing, tracer, tracing, uninstall_tracing


class Seen:
    def __init__(self) -> None:
        self.peers: set[tuple[str, int]] = set()
        self.headers: list[dict[str, str]] = []
        self.released = asyncio.Event()
        self.four_waiting = asyncio.Event()


@pytest.fixture
async def served(
    dev_pki: Callable[[str], CertificatePaths],
) -> AsyncIterator[tuple[str, Seen, ssl.SSLContext]]:
    """A uvicorn app over mutual TLS; the client context presents a certificate."""
    server_certs, client_certs = dev_pki("payments"), dev_pki("orders")
    seen = Seen()

    async def echo(request: Request) -> Response:
        client = request.scope.get("client")
        if client:
            seen.peers.add((client[0], client[1]))
        seen.headers.append(dict(request.headers))
        if request.query_params.get("wait"):
            if len(seen.headers) == 4:
                seen.four_waiting.set()
            await seen.released.wait()
        body = await request.body()
        status = int(request.query_params.get("status", "200"))
        return JSONResponse(
            {"method": request.method, "path": request.url.path, "query": request.url.query,
             "body": json.loads(body) if body else None},
            status_code=status, headers={"X-Answer": "yes"},
        )  # fmt: skip

    app = Starlette(routes=[Route("/echo/{rest:path}", echo, methods=["GET", "POST"])])
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="off",
        ssl_certfile=str(server_certs.cert), ssl_keyfile=str(server_certs.key),
        ssl_ca_certs=str(server_certs.ca), ssl_cert_reqs=ssl.CERT_REQUIRED,
    )  # fmt: skip
    async with running_server(config):
        yield (
            f"https://127.0.0.1:{port}",
            seen,
            client_context(client_certs.ca, client_certs.cert, client_certs.key),
        )


async def test_json_in_and_out_over_mutual_tls_on_one_kept_alive_connection(
    served: tuple[str, Seen, ssl.SSLContext],
) -> None:
    base, seen, tls = served
    client = HttpClient(ssl_context=tls)
    try:
        posted = await client.post(
            f"{base}/echo/a?x=1", json={"amount_minor": 5, "name": "é"},
            headers={"Idempotency-Key": "k-1"},
        )  # fmt: skip
        got = await client.get(f"{base}/echo/b")
        refused = await client.get(f"{base}/echo/c?status=422")
    finally:
        await client.aclose()
    assert posted.status_code == 200
    assert posted.json() == {
        "method": "POST", "path": "/echo/a", "query": "x=1",
        "body": {"amount_minor": 5, "name": "é"},
    }  # fmt: skip
    assert posted.headers["x-answer"] == "yes"
    assert posted.headers["content-type"] == "application/json"
    assert got.json()["path"] == "/echo/b"
    assert refused.status_code == 422  # an answer, not an error
    assert seen.headers[0]["idempotency-key"] == "k-1"
    assert seen.headers[0]["content-type"] == "application/json"
    assert len(seen.peers) == 1  # three requests, one connection


async def test_concurrent_requests_each_get_a_connection_and_keep_them(
    served: tuple[str, Seen, ssl.SSLContext],
) -> None:
    base, seen, tls = served
    client = HttpClient(ssl_context=tls)
    try:
        first = [asyncio.create_task(client.get(f"{base}/echo/{n}?wait=1")) for n in range(4)]
        await asyncio.wait_for(seen.four_waiting.wait(), 10)  # all four inside at once
        seen.released.set()
        assert [r.status_code for r in await asyncio.gather(*first)] == [200] * 4
        again = await asyncio.gather(*(client.get(f"{base}/echo/x") for _ in range(4)))
        assert [r.status_code for r in again] == [200] * 4
    finally:
        await client.aclose()
    assert len(seen.peers) == 4  # the second round reused the four idle connections


async def test_the_trace_goes_on_and_a_sampled_request_gets_a_client_span(
    served: tuple[str, Seen, ssl.SSLContext], tmp_path: Path
) -> None:
    base, seen, tls = served
    client = HttpClient(ssl_context=tls)
    unsampled = RequestContext("r-1", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", False)
    token = set_context(unsampled)
    try:
        await client.get(f"{base}/echo/plain")
    finally:
        reset_context(token)
    assert seen.headers[0]["traceparent"] == unsampled.traceparent()
    settings = ServiceSettings(
        service_name="orders", var_dir=tmp_path, trace_sample_ratio=1.0, trace_export_delay_s=0.05
    )
    install_tracing(settings, instance="orders-0")
    try:
        with tracer().start_as_current_span("saga step") as parent:
            await client.get(f"{base}/echo/traced?status=503")
        active = tracing()
        assert active is not None
        active.processor.force_flush()
    finally:
        uninstall_tracing()
        await client.aclose()
    lines = (tmp_path / "traces" / "orders-0.jsonl").read_text().splitlines()
    span = next(s for s in map(json.loads, lines) if s["kind"] == "CLIENT")
    assert span["parent_span_id"] == format(parent.get_span_context().span_id, "016x")
    assert seen.headers[1]["traceparent"] == f"00-{span['trace_id']}-{span['span_id']}-01"
    assert (span["attributes"]["http.response.status_code"], span["status"]) == (503, "ERROR")


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _raw_server(handle: Handler) -> tuple[asyncio.Server, str]:
    """A server running `handle` per connection; every connection is closed when the
    handler ends, however it ends."""

    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test ended
        finally:
            writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def test_a_connection_the_server_drops_unanswered_is_replaced_once() -> None:
    """The server answers the first request of each connection and hangs up on the next
    without a word (as one does that closed an idle connection): the request goes once
    more, on a new connection."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_OK)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server, base = await _raw_server(handle)
    client = HttpClient()
    try:
        assert (await client.get(f"{base}/a")).content == b"ok"
        assert (await client.get(f"{base}/b")).content == b"ok"
        assert connections == 2
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_a_broken_answer_a_late_one_and_nobody_listening_are_errors() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
        await writer.drain()
        writer.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # never answers: waits until the client hangs up

    broken, broken_url = await _raw_server(half)
    slow, slow_url = await _raw_server(silent)
    client = HttpClient()
    try:
        with pytest.raises(HttpProtocolError):
            await client.get(f"{broken_url}/x")
        with pytest.raises(HttpTimedOut):
            await client.get(f"{slow_url}/x", timeout_s=0.2)
        with pytest.raises(HttpConnectFailed):
            await client.get(f"http://127.0.0.1:{free_port()}/x")
        with pytest.raises(ValueError, match="cannot be sent"):
            await client.get(f"{slow_url}/x", headers={"X-Evil": "a\r\nX-Injected: 1"})
    finally:
        await client.aclose()
        for server in (broken, slow):
            server.close()
            await server.wait_closed()
