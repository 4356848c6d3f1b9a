"""HTTP/1.1 framing on the client side, over raw sockets: what curl and friends rely on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from flotilla_kit.problems import problem_type

from .harness import ECHO_POLICY, Stack


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> RawResponse:
    """One response with a Content-Length body (the gateway never sends any other kind)."""
    raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = 0 if head else int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 5)
    return RawResponse(int(status_line.split(" ")[1]), headers, body)


async def connect(stack: Stack) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", stack.gateway_port)


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(1), 5) == b""


async def test_chunked_request_body_is_forwarded_with_content_length(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY)
    reader, writer = await connect(stack)
    writer.write(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    for chunk in (b'{"user":', b' "ada"}'):
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    response = await read_response(reader)
    writer.close()
    assert response.status == 200
    seen = response.json()
    assert seen["body"] == '{"user": "ada"}'
    received = {name.lower(): value for name, value in seen["headers"]}
    assert received["content-length"] == "15"
    assert "transfer-encoding" not in received


async def test_expect_100_continue_is_answered_before_the_body_is_sent(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY)
    reader, writer = await connect(stack)
    writer.write(
        b"PUT /api/v1/auth/profile HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    response = await read_response(reader)
    writer.close()
    assert response.status == 200
    seen = response.json()
    assert seen["body"] == "hello"
    assert "expect" not in {name.lower() for name, _ in seen["headers"]}


async def test_bodies_over_the_limit_get_413(stack: Stack) -> None:
    upstream = await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY, max_body_bytes=100)
    reader, writer = await connect(stack)
    writer.write(
        b"POST /api/v1/auth/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 101\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    declared = await read_response(reader)
    assert await closed_by_peer(reader)
    writer.close()

    reader, writer = await connect(stack)
    writer.write(
        b"POST /api/v1/auth/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"40\r\n"
        + b"x" * 64
        + b"\r\n"
        + b"40\r\n"
        + b"x" * 64
        + b"\r\n"
    )
    chunked = await read_response(reader)
    writer.close()

    for response in (declared, chunked):
        assert response.status == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["connection"] == "close"
        assert response.json()["type"] == problem_type("payload-too-large")
    assert upstream.seen == []


async def test_pipelined_requests_are_answered_in_order(stack: Stack) -> None:
    auth = await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY)
    reader, writer = await connect(stack)
    writer.write(
        b"GET /api/v1/auth/one/slow HTTP/1.1\r\nHost: gw\r\n\r\n"
        b"POST /api/v1/auth/two HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /nowhere HTTP/1.1\r\nHost: gw\r\n\r\n"
        b"GET /livez HTTP/1.1\r\nHost: gw\r\n\r\n"
    )
    # The first one is held upstream while the others could be answered at once.
    await asyncio.wait_for(auth.entered_event.wait(), 5)
    auth.release.set()
    responses = [await read_response(reader) for _ in range(4)]
    writer.close()
    assert [r.status for r in responses] == [200, 200, 404, 200]
    assert responses[0].json()["path"] == "/api/v1/auth/one/slow"
    assert responses[1].json()["body"] == "abc"
    assert responses[3].json() == {"status": "alive"}


async def test_http_10_and_connection_close(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY)

    reader, writer = await connect(stack)
    writer.write(b"GET /api/v1/auth/old HTTP/1.0\r\n\r\n")
    plain = await read_response(reader)
    assert plain.headers["connection"] == "close"
    assert await closed_by_peer(reader)
    writer.close()

    reader, writer = await connect(stack)
    writer.write(b"GET /livez HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    kept = await read_response(reader)
    assert kept.headers["connection"] == "keep-alive"
    writer.write(b"GET /api/v1/auth/again HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    closing = await read_response(reader)
    assert closing.headers["connection"] == "close"
    assert await closed_by_peer(reader)
    writer.close()

    assert plain.status == kept.status == closing.status == 200
    # An HTTP/1.0 request without Host still reaches the service, minus X-Forwarded-Host.
    assert "x-forwarded-host" not in {name.lower() for name, _ in plain.json()["headers"]}


async def test_malformed_requests_get_a_400_problem_and_the_connection_closes(
    stack: Stack,
) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY)
    for garbage in (
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET /api/v1/auth/x HTTP/1.1\r\nHost: gw\r\nBad Header\r\n\r\n",
        b"GET /api/v1/auth/x HTTP/1.1\r\n\r\n",  # no Host
    ):
        reader, writer = await connect(stack)
        writer.write(garbage)
        response = await read_response(reader)
        assert response.status == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["connection"] == "close"
        assert response.json()["type"] == problem_type("bad-request")
        assert response.json()["request_id"] == response.headers["x-request-id"]
        assert await closed_by_peer(reader)
        writer.close()


async def test_oversized_header_fields_get_431(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY, max_header_bytes=1024)
    reader, writer = await connect(stack)
    writer.write(b"GET /api/v1/auth/x HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 2048 + b"\r\n\r\n")
    response = await read_response(reader)
    writer.close()
    assert response.status == 431
    assert response.json()["type"] == problem_type("header-too-large")


async def test_local_endpoints_answer_get_and_head_only(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY)
    reader, writer = await connect(stack)
    writer.write(b"HEAD /livez HTTP/1.1\r\nHost: gw\r\n\r\n")
    head = await read_response(reader, head=True)
    writer.write(b"POST /livez HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n")
    post = await read_response(reader)
    writer.close()
    assert head.status == 200
    assert int(head.headers["content-length"]) > 0
    assert post.status == 405
    assert post.headers["allow"] == "GET, HEAD"


async def test_idle_client_connections_are_closed(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(policy=ECHO_POLICY, keepalive_timeout_s=0.1)
    reader, writer = await connect(stack)
    writer.write(b"GET /livez HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert (await read_response(reader)).status == 200
    assert await closed_by_peer(reader)
    writer.close()
