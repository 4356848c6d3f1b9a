"""The PROXY protocol (HAProxy's, versions 1 and 2): the client's address from a proxy that
passes TLS through untouched (an ingress in SSL-passthrough mode, a TCP load balancer),
which therefore cannot add `X-Forwarded-For`.

With `FLOTILLA_PROXY_PROTOCOL` on, every connection to the client port must start with a
PROXY header, before TLS, and come from a peer in `FLOTILLA_TRUSTED_PROXIES`; anything
else is closed unanswered (a client that could send its own header could pick its
address). The listener accepts connections itself, reads exactly the header (peeking, so
not one byte of the TLS handshake behind it is consumed), then hands the socket to asyncio
with the address the header gave.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Final

from flotilla_gateway.forwarding import TrustedProxies
from flotilla_kit.logs import get_logger

__all__ = ["ProxyHeaderError", "ProxyListener", "parse_proxy_header"]

_log = get_logger("flotilla.gateway.proxy_protocol")

V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_PREFIX: Final = b"PROXY "
_V1_MAX: Final = 107  # the longest v1 line, CRLF included (the specification, 2.1)
_V2_FIXED: Final = 16
_V2_MAX_EXTRA: Final = 2048  # addresses plus TLVs we are willing to skip
_HEADER_TIMEOUT_S: Final = 5.0


class ProxyHeaderError(ValueError):
    """Not a valid PROXY header."""


def parse_proxy_header(data: bytes) -> tuple[int, str | None] | None:
    """(header length, client address or None for LOCAL/UNKNOWN) once `data` holds a whole
    header; None while more bytes are needed. Raises ProxyHeaderError for anything else."""
    if data.startswith(V2_SIGNATURE[: len(data)]) and len(data) < _V2_FIXED:
        return None
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if _V1_PREFIX.startswith(data[: len(_V1_PREFIX)]) and len(data) < len(_V1_PREFIX):
        return None
    if data.startswith(_V1_PREFIX):
        return _parse_v1(data)
    raise ProxyHeaderError("no PROXY header")


def _parse_v1(data: bytes) -> tuple[int, str | None] | None:
    end = data.find(b"\r\n", 0, _V1_MAX)
    if end < 0:
        if len(data) >= _V1_MAX:
            raise ProxyHeaderError("PROXY v1 line too long")
        return None
    parts = data[:end].split(b" ")
    if parts[1:2] == [b"UNKNOWN"]:
        return end + 2, None
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("malformed PROXY v1 line")
    try:
        source = ipaddress.ip_address(parts[2].decode("ascii"))
        ipaddress.ip_address(parts[3].decode("ascii"))
        ports = [int(port) for port in parts[4:6]]
    except (ValueError, UnicodeDecodeError):
        raise ProxyHeaderError("malformed PROXY v1 addresses") from None
    if source.version != (4 if parts[1] == b"TCP4" else 6) or not all(
        0 <= port <= 65535 for port in ports
    ):
        raise ProxyHeaderError("malformed PROXY v1 addresses")
    return end + 2, str(source)


def _parse_v2(data: bytes) -> tuple[int, str | None] | None:
    version_command, family, length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2 or version_command & 0x0F > 1:
        raise ProxyHeaderError("unsupported PROXY v2 version or command")
    if length > _V2_MAX_EXTRA:
        raise ProxyHeaderError("PROXY v2 header too long")
    total = _V2_FIXED + length
    if len(data) < total:
        return None
    if version_command & 0x0F == 0:  # LOCAL: the proxy's own connection (a health check)
        return total, None
    if family >> 4 == 1 and length >= 12:
        return total, str(ipaddress.IPv4Address(data[16:20]))
    if family >> 4 == 2 and length >= 36:
        return total, str(ipaddress.IPv6Address(data[16:32]))
    if family >> 4 == 0:  # UNSPEC
        return total, None
    raise ProxyHeaderError("unsupported PROXY v2 address family")


ProtocolFactory = Callable[[str | None], asyncio.Protocol]


class ProxyListener:
    """Accepts on `sock`, reads each connection's PROXY header, then serves it."""

    def __init__(
        self,
        sock: socket.socket,
        factory: ProtocolFactory,
        *,
        trusted: TrustedProxies,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.sock = sock
        self._factory = factory
        self._trusted = trusted
        self._ssl = ssl_context
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.sock.setblocking(False)
        self._task = asyncio.get_running_loop().create_task(self._accept())

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._pending) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.sock.close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, peer = await loop.sock_accept(self.sock)
            except OSError as error:  # EMFILE and the like: keep the listener alive
                _log.warning("accept failed", error=str(error))
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._admit(connection, str(peer[0])))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _admit(self, connection: socket.socket, peer: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            if not self._trusted.trusts(peer):
                raise ProxyHeaderError(f"{peer} is not a trusted proxy")
            async with asyncio.timeout(_HEADER_TIMEOUT_S):
                client = await _read_header(loop, connection)
            await loop.connect_accepted_socket(
                lambda: self._factory(client or peer),
                connection,
                ssl=self._ssl,
                ssl_handshake_timeout=10.0 if self._ssl is not None else None,
            )
        except (ProxyHeaderError, TimeoutError, OSError, ssl.SSLError) as error:
            _log.warning("connection refused", peer=peer, reason=str(error) or "timeout")
            with contextlib.suppress(OSError):
                connection.close()


async def _read_header(loop: asyncio.AbstractEventLoop, connection: socket.socket) -> str | None:
    """Consume exactly the PROXY header; what follows stays in the socket for TLS."""
    while True:
        await _readable(loop, connection)
        data = connection.recv(_V2_FIXED + _V2_MAX_EXTRA, socket.MSG_PEEK)
        if not data:
            raise ProxyHeaderError("closed before a PROXY header")
        parsed = parse_proxy_header(data)
        if parsed is not None:
            length, client = parsed
            connection.recv(length)  # the same bytes, now taken off the socket
            return client
        if len(data) >= _V2_FIXED + _V2_MAX_EXTRA:
            raise ProxyHeaderError("PROXY header too long")
        await asyncio.sleep(0.005)  # the rest of a split header is still on its way


async def _readable(loop: asyncio.AbstractEventLoop, connection: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    fd = connection.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
