"""The load generator's HTTP/1.1 client: one keep-alive connection per worker, over TLS.

Written by hand because the load generator shares two cores with the system it measures,
so what it spends per request is taken from the system: measured on this machine (GET of
an account through the gateway over TLS, 16 connections, one process, same run), httpx
spent 985 µs of the client's CPU per request, aiohttp 218 µs and this client 132 µs.
It does only what the benchmark needs: one request at a time per connection, a
Content-Length body (the gateway always answers with one), reconnect when the server
closed.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any

from httptools import HttpResponseParser

__all__ = ["Connection", "Response"]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[bytes, bytes]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.lower().encode("latin-1"))
        return value.decode("latin-1") if value is not None else None


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = HttpResponseParser(self)
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._waiter: asyncio.Future[Response] | None = None
        self.closed = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # a malformed answer fails the request, not the loop
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        response = Response(self._parser.get_status_code(), self._headers, b"".join(self._body))
        self._headers, self._body = {}, []
        if not self._parser.should_keep_alive() and self.transport is not None:
            self.closed = True
            self.transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter


class Connection:
    """`await connection.request("GET", "/path", headers)`: one request at a time."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext, *, timeout_s: float) -> None:
        self._host, self._port, self._tls = host, port, tls
        self._timeout_s = timeout_s
        self._authority = f"{host}:{port}".encode("latin-1")
        self._protocol: _Protocol | None = None

    async def _connected(self) -> _Protocol:
        if self._protocol is None or self._protocol.closed:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(
                _Protocol, self._host, self._port, ssl=self._tls, server_hostname=self._host
            )
            self._protocol = protocol
        return self._protocol

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        json_body: Any = None,
        form: str | None = None,
    ) -> Response:
        body = b""
        lines = [f"{method} {path} HTTP/1.1".encode("latin-1"), b"Host: " + self._authority]
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            lines.append(b"Content-Type: application/json")
        elif form is not None:
            body = form.encode()
            lines.append(b"Content-Type: application/x-www-form-urlencoded")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        lines.extend(f"{k}: {v}".encode("latin-1") for k, v in (headers or {}).items())
        data = b"\r\n".join(lines) + b"\r\n\r\n" + body
        async with asyncio.timeout(self._timeout_s):
            protocol = await self._connected()
            try:
                return await protocol.send(data)
            except BaseException:
                self.close()  # an answer cut off or timed out: this connection is spent
                raise

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
