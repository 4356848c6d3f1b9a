"""PROXY protocol headers (v1 text, v2 binary): the client's address, or why not."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from flotilla_gateway.proxy_protocol import V2_SIGNATURE, ProxyHeaderError, parse_proxy_header

TLS_HELLO = b"\x16\x03\x01\x02\x00"  # what follows the header: never part of it


def v2(command: int, family: int, addresses: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, len(addresses)) + addresses


def test_v1_names_the_client_and_its_length_stops_before_tls() -> None:
    line = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8443\r\n"
    assert parse_proxy_header(line + TLS_HELLO) == (len(line), "203.0.113.7")
    six = b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 8443\r\n"
    assert parse_proxy_header(six) == (len(six), "2001:db8::7")
    assert parse_proxy_header(b"PROXY UNKNOWN\r\n") == (15, None)


def test_v2_names_the_client() -> None:
    four = ipaddress.IPv4Address("203.0.113.7").packed + bytes(4) + struct.pack("!HH", 1, 2)
    header = v2(1, 0x11, four)
    assert parse_proxy_header(header + TLS_HELLO) == (len(header), "203.0.113.7")
    six = ipaddress.IPv6Address("2001:db8::7").packed + bytes(16) + struct.pack("!HH", 1, 2)
    assert parse_proxy_header(v2(1, 0x21, six)) == (16 + 36, "2001:db8::7")
    # LOCAL: the proxy speaking for itself (a health check): no client address.
    assert parse_proxy_header(v2(0, 0x00, b"")) == (16, None)


@pytest.mark.parametrize(
    "partial",
    [b"", b"PRO", b"PROXY TCP4 203.0.113.7", V2_SIGNATURE[:5], V2_SIGNATURE + b"\x21\x11"],
)
def test_a_header_not_yet_whole_asks_for_more(partial: bytes) -> None:
    assert parse_proxy_header(partial) is None


@pytest.mark.parametrize(
    "junk",
    [
        TLS_HELLO,  # a client that sent no header
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n",
        b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 1 99999\r\n",
        b"PROXY TCP4 " + b"9" * 120,
        V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12),  # version 1 in a v2 frame
        V2_SIGNATURE + b"\x21\x31\x00\x0c" + bytes(12),  # AF_UNIX: no address to use
        V2_SIGNATURE + b"\x21\x11\xff\xff",  # longer than we accept
    ],
)
def test_anything_else_is_refused(junk: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(junk)
