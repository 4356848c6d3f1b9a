"""A TLS-passthrough proxy in front (FLOTILLA_PROXY_PROTOCOL): the PROXY header before the
TLS handshake names the client; without one, or from an untrusted peer, nothing is served."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import struct

import pytest

from flotilla_gateway.proxy_protocol import V2_SIGNATURE
from flotilla_gateway.settings import GatewaySettings

from .harness import Stack, header_values

TOKEN_REQUEST = (
    b"POST /api/v1/auth/token HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
    b"content-length: 2\r\nconnection: close\r\n\r\n{}"
)


async def _through_proxy(stack: Stack, header: bytes) -> tuple[int, dict[str, object]]:
    """Connect as the proxy would: the header in clear, then the client's TLS."""
    assert stack.gateway is not None
    context = stack._client_context
    assert isinstance(context, ssl.SSLContext)
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.gateway.port)
    writer.write(header)
    await writer.drain()
    await writer.start_tls(context, server_hostname="localhost")
    writer.write(TOKEN_REQUEST)
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


async def test_the_proxy_header_names_the_client(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(tls=True, proxy_protocol=True, trusted_proxies=["127.0.0.0/8"])
    v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8443\r\n"
    status, seen = await _through_proxy(stack, v1)
    assert status == 200
    assert header_values(seen, "x-forwarded-for") == ["203.0.113.7"]

    address = ipaddress.IPv6Address("2001:db8::7").packed + bytes(16) + struct.pack("!HH", 1, 2)
    v2 = V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x21, len(address)) + address
    status, seen = await _through_proxy(stack, v2)
    assert status == 200
    assert header_values(seen, "x-forwarded-for") == ["2001:db8::7"]


async def _closed_unanswered(stack: Stack, first_bytes: bytes) -> bool:
    assert stack.gateway is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.gateway.port)
    writer.write(first_bytes)
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:  # closed with our bytes unread: a reset, not a FIN
        answer = b""
    writer.close()
    return answer == b""


async def test_a_connection_without_a_header_is_closed(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(tls=True, proxy_protocol=True, trusted_proxies=["127.0.0.0/8"])
    # A client that bypassed the proxy starts its TLS handshake at once.
    assert await _closed_unanswered(stack, b"\x16\x03\x01\x00\x05hello")


async def test_a_header_from_an_untrusted_peer_is_not_believed(stack: Stack) -> None:
    await stack.upstream("auth")
    await stack.start_gateway(tls=True, proxy_protocol=True, trusted_proxies=["10.0.0.0/8"])
    assert await _closed_unanswered(stack, b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8443\r\n")


def test_the_proxy_protocol_needs_trusted_proxies() -> None:
    with pytest.raises(ValueError, match="FLOTILLA_PROXY_PROTOCOL needs FLOTILLA_TRUSTED_PROXIES"):
        GatewaySettings(proxy_protocol=True)
