"""Candidate 5, the floor of a Python proxy: asyncio Protocols on uvloop with httptools
parsers on both sides, no framework, no task and no future per request (a reply is a
callback from the upstream's parser to the client's connection). The gateway is built
this way, with its features on top.

    python -m flotilla_cli.bench.stacks.bare_httptools --port P --upstream URL
"""

from __future__ import annotations

import asyncio
import signal
from collections import deque
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import cast

import httptools
import uvloop

from flotilla_cli.bench.stacks.job import HOST, POOL_IDLE_S, JobArgs, parse_args

__all__ = ["main", "serve"]

# status, content-type (b"" if none), body
Reply = Callable[[int, bytes, bytes], None]
_AUTHORIZATION = b"authorization"
_CONTENT_TYPE = b"content-type"
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def _head(status: int, content_type: bytes, length: int, keep_alive: bool) -> bytes:
    reason = _REASONS.get(status, b"")
    kind = b"content-type: " + content_type + b"\r\n" if content_type else b""
    close = b"" if keep_alive else b"connection: close\r\n"
    return b"HTTP/1.1 %d %s\r\n%s%scontent-length: %d\r\n\r\n" % (
        status, reason, kind, close, length,
    )  # fmt: skip


class _Pool:
    """Keep-alive connections to the upstream, reused last in, first out; a new one is
    opened (in a task, the only one) when none is idle."""

    def __init__(self, loop: asyncio.AbstractEventLoop, args: JobArgs) -> None:
        self.loop = loop
        self.host, self.port = args.upstream_host, args.upstream_port
        self.host_header = f"{self.host}:{self.port}".encode()
        self.idle: list[_Upstream] = []
        self._opening: set[asyncio.Task[None]] = set()

    def send(self, request: bytes, reply: Reply) -> None:
        now = self.loop.time()
        while self.idle:
            connection = self.idle.pop()
            if now - connection.idle_since < POOL_IDLE_S:
                connection.send(request, reply)
                return
            connection.close()
        task = self.loop.create_task(self._open_and_send(request, reply))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    async def _open_and_send(self, request: bytes, reply: Reply) -> None:
        try:
            _, connection = await self.loop.create_connection(
                lambda: _Upstream(self), self.host, self.port
            )
        except OSError:
            reply(502, b"", b"")
            return
        connection.send(request, reply)


class _Upstream(asyncio.Protocol):
    """One connection to the upstream, one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.reply: Reply | None = None
        self.content_type = b""
        self.body: list[bytes] = []
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, request: bytes, reply: Reply) -> None:
        assert self.transport is not None
        self.reply, self.content_type, self.body = reply, b"", []
        self.transport.write(request)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == _CONTENT_TYPE:
            self.content_type = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        reply, self.reply = self.reply, None
        status, kind, body = self.parser.get_status_code(), self.content_type, b"".join(self.body)
        if self.parser.should_keep_alive():
            self.idle_since = self.pool.loop.time()
            self.pool.idle.append(self)
        else:
            self.close()
        if reply is not None:  # after release: the reply may send the next request on it
            reply(status, kind, body)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool.idle:  # only when the upstream closed an idle connection
            self.pool.idle.remove(self)
        reply, self.reply = self.reply, None
        if reply is not None:
            reply(502, b"", b"")


class _Client(asyncio.Protocol):
    """One client connection: requests answered in the order they came (pipelining is
    served one request at a time)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.authorization = b""
        # upstream request (None: refused with 405), whether to keep the connection open
        self.pending: deque[tuple[bytes | None, bool]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.authorization = b"", b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == _AUTHORIZATION:
            self.authorization = value

    def on_message_complete(self) -> None:
        request = None
        if self.parser.get_method() == b"GET":
            auth = b"authorization: " + self.authorization + b"\r\n" if self.authorization else b""
            request = b"GET %s HTTP/1.1\r\nhost: %s\r\n%s\r\n" % (
                self.url, self.pool.host_header, auth,
            )  # fmt: skip
        self.pending.append((request, self.parser.should_keep_alive()))
        if len(self.pending) == 1:
            self._next()

    def _next(self) -> None:
        request, _ = self.pending[0]
        if request is None:
            self._reply(405, b"", b"")
        else:
            self.pool.send(request, self._reply)

    def _reply(self, status: int, content_type: bytes, body: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self.pending.clear()
            return
        _, keep_alive = self.pending.popleft()
        transport.write(_head(status, content_type, len(body), keep_alive) + body)
        if not keep_alive:
            transport.close()
        elif self.pending:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pending.clear()


async def serve(args: JobArgs) -> None:
    """Until SIGINT or SIGTERM (handled here: a signal a parent ignores stays ignored
    in its children, and would then not stop this one)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    pool = _Pool(loop, args)
    async with await loop.create_server(lambda: _Client(pool), HOST, args.port):
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("Bare asyncio Protocols on uvloop, httptools both ways.", argv)
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
