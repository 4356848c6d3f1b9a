"""The HTTP/1.1 client the gateway forwards with: keep-alive connection pools per instance.

One `ConnectionPool` per upstream instance keeps idle connections on a LIFO stack (the most
recently used one is the most likely to still be open). A connection carries one request
at a time; its response is parsed by httptools and buffered whole (API bodies are small),
so the gateway can re-frame it with a Content-Length.

The hot path is callbacks, not coroutines: `ConnectionPool.send()` writes the request on
an idle connection at once and the connection calls its `ResponseListener` from the
parser callbacks, so a proxied request costs no task, no future and no extra trip through
the event loop. Only opening a new connection runs as a task. `ConnectionPool.request()`
wraps the same path in a future for callers that prefer to await (health checks, OpenAPI).
Timeouts are deadlines on the connection, checked by one `Deadlines` ticker for every pool
(a loop timer per request would cost more than the rest of sending it).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, cast
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from flotilla_gateway.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReset,
    UpstreamTimeout,
)
from flotilla_gateway.headers import (
    CACHE_CONTROL,
    CONNECTION,
    CONTENT_LENGTH,
    PASS,
    RESPONSE_KINDS,
    TRANSFER_ENCODING,
    connection_tokens,
    drop_nominated,
)

__all__ = [
    "ConnectionPool",
    "Deadlines",
    "Endpoint",
    "ResponseListener",
    "UpstreamConnection",
    "UpstreamResponse",
]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an instance listens, parsed once from its topology URL."""

    url: str
    host: str
    port: int
    tls: bool
    # host[:port] as it goes in the Host header.
    authority: bytes
    # The name sent as SNI and checked against the certificate. Usually the URL's host;
    # for an instance found through DNS the URL holds a pod IP while the certificate
    # names the Service.
    server_name: str

    @classmethod
    def parse(cls, url: str, *, server_name: str | None = None) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL must be http(s)://host[:port]: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        authority = parts.netloc.rpartition("@")[2]
        return cls(
            url=url,
            host=parts.hostname,
            port=port,
            tls=tls,
            authority=authority.encode(),
            server_name=server_name or parts.hostname,
        )


class UpstreamResponse(NamedTuple):
    status: int
    # Header fields to pass on, rendered `name: value\r\n`; framing and hop-by-hop removed.
    lines: list[bytes]
    body: bytes
    # The upstream's own Content-Length, which a HEAD or 304 response keeps.
    content_length: bytes | None
    # The upstream's Cache-Control line(s), kept apart: some routes replace them.
    cache_control: bytes | None = None


class ResponseListener(Protocol):
    """Told exactly once how a request sent with `ConnectionPool.send()` ended."""

    def upstream_response(self, response: UpstreamResponse) -> None: ...

    def upstream_failed(self, error: UpstreamError) -> None: ...


_KNOWN_KINDS = RESPONSE_KINDS.known


class _TooLarge(Exception):
    pass


class Deadlines:
    """The request timeouts of many pools, with one loop timer ticking while any request
    is in progress (instead of a timer per request). A request times out between its
    deadline and one tick later."""

    def __init__(self, tick_s: float = 0.05) -> None:
        self.tick_s = tick_s
        self._pools: set[ConnectionPool] = set()
        self._handle: asyncio.TimerHandle | None = None
        # Read on every request: True while no tick is scheduled.
        self.idle = True

    def __len__(self) -> int:
        """How many pools it watches."""
        return len(self._pools)

    def add(self, pool: ConnectionPool) -> None:
        self._pools.add(pool)

    def discard(self, pool: ConnectionPool) -> None:
        self._pools.discard(pool)

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """A request began while no tick was scheduled."""
        self.idle = False
        self._handle = loop.call_later(self.tick_s, self._tick, loop)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.idle = True

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        busy = False
        for pool in list(self._pools):
            busy = pool.expire(now) or busy
        if busy:
            self._handle = loop.call_later(self.tick_s, self._tick, loop)
        else:
            self._handle = None
            self.idle = True


class UpstreamConnection(asyncio.Protocol):
    """One connection to an instance, carrying one request at a time."""

    def __init__(
        self, pool: ConnectionPool, loop: asyncio.AbstractEventLoop, max_response_bytes: int
    ) -> None:
        self.loop = loop
        self._pool = pool
        self._max_response_bytes = max_response_bytes
        self._parser = HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._listener: ResponseListener | None = None
        # When the request in progress times out (loop time); checked by `Deadlines`.
        self.deadline = 0.0
        self.closed = False
        self.idle_since = 0.0
        self._exchanges = 0
        self._head = False
        self._started = False
        self._status = 0
        self._informational = False
        self._framed = False
        self._lines: list[bytes] = []
        self._body: list[bytes] | None = None
        self._body_bytes = 0
        self._content_length: bytes | None = None
        self._cache_control: bytes | None = None
        self._nominated: frozenset[bytes] | None = None

    def begin(
        self, parts: Sequence[bytes], head: bool, timeout_s: float, listener: ResponseListener
    ) -> None:
        """Write one request (its parts in order); `listener` hears how it ended."""
        self._listener = listener
        self._exchanges += 1
        self._head = head
        self._started = False
        self._status = 0
        self._framed = False
        self._lines = []
        self._body = None
        self._body_bytes = 0
        self._content_length = None
        self._cache_control = None
        self._nominated = None
        self.deadline = self.loop.time() + timeout_s
        deadlines = self._pool.deadlines
        if deadlines.idle:
            deadlines.arm(self.loop)
        assert self._transport is not None
        try:
            self._transport.writelines(parts)
        except RuntimeError:
            # The transport died a moment ago and connection_lost has not run yet.
            self._fail(
                UpstreamReset(
                    f"connection to {self._pool.endpoint.url} closed",
                    response_started=False,
                    reused=self._exchanges > 1,
                )
            )

    @property
    def usable(self) -> bool:
        transport = self._transport
        return not self.closed and transport is not None and not transport.is_closing()

    def abort(self) -> None:
        """Drop the connection now; a request in progress fails (connection_lost tells it)."""
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._listener is None:
            # Bytes nobody asked for: the stream is out of step; never reuse it.
            self.abort()
            return
        self._started = True
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._fail(UpstreamProtocolError("upstream switched protocols"))
        except HttpParserError as error:
            if isinstance(error.__context__, _TooLarge):
                self._fail(UpstreamProtocolError("upstream response body too large"))
            else:
                self._fail(UpstreamProtocolError(f"malformed upstream response: {error}"))

    def eof_received(self) -> bool | None:
        self.closed = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._listener is None:
            return
        if self._status and not self._framed and not self._informational:
            # A response without Content-Length or chunking ends with the connection
            # (RFC 9112 6.3); httptools has no end-of-input call, so it is completed here.
            self._complete(keep_alive=False)
        else:
            self._fail(
                UpstreamReset(
                    f"connection to {self._pool.endpoint.url} closed: {exc!r}",
                    response_started=self._started,
                    reused=self._exchanges > 1,
                )
            )

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        kind = _KNOWN_KINDS.get(name)
        if kind is None:
            kind = RESPONSE_KINDS(name)
        if kind == PASS:
            self._lines.append(name + b": " + value + b"\r\n")
        elif kind == CACHE_CONTROL:
            line = name + b": " + value + b"\r\n"
            cached = self._cache_control
            self._cache_control = line if cached is None else cached + line
        elif kind == CONTENT_LENGTH:
            self._framed = True
            self._content_length = value
        elif kind == CONNECTION:
            tokens = connection_tokens(value)
            self._nominated = tokens if self._nominated is None else self._nominated | tokens
        elif kind == TRANSFER_ENCODING:
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            # 1xx (e.g. 103 Early Hints) has no body; the final response follows.
            self._informational = True
            return
        self._status = status
        if self._head:
            # No body follows a HEAD response, but llhttp cannot be told so and would wait
            # for Content-Length bytes: complete now and do not reuse the connection.
            self._complete(keep_alive=False)

    def on_body(self, body: bytes) -> None:
        size = self._body_bytes + len(body)
        if size > self._max_response_bytes:
            raise _TooLarge
        self._body_bytes = size
        if self._body is None:
            self._body = [body]
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            self._lines = []
            self._framed = False
            self._content_length = None
            self._cache_control = None
            self._nominated = None
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    # outcomes

    def _complete(self, *, keep_alive: bool) -> None:
        listener = self._listener
        if listener is None:
            return
        self._listener = None
        body = self._body
        lines = self._lines
        cache_control = self._cache_control
        if self._nominated is not None:
            lines = drop_nominated(lines, self._nominated)
            if b"cache-control" in self._nominated:
                cache_control = None
        response = UpstreamResponse(
            self._status,
            lines,
            b"" if body is None else body[0] if len(body) == 1 else b"".join(body),
            self._content_length,
            cache_control,
        )
        # Back in the pool before the listener runs, so its next request can use it.
        self._pool.release(self, reusable=keep_alive and not self.closed)
        listener.upstream_response(response)

    def _fail(self, error: UpstreamError) -> None:
        listener = self._listener
        self._listener = None
        # Whatever state the stream is in, it cannot carry another request.
        self.abort()
        self._pool.release(self, reusable=False)
        if listener is not None:
            listener.upstream_failed(error)

    def expire(self) -> None:
        """The request in progress is past its deadline."""
        if self._listener is not None:
            self._fail(UpstreamTimeout(f"no response from {self._pool.endpoint.url} in time"))


class _FutureListener:
    """Adapts the callback path to `await`."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[UpstreamResponse]) -> None:
        self.future = future

    def upstream_response(self, response: UpstreamResponse) -> None:
        if not self.future.done():
            self.future.set_result(response)

    def upstream_failed(self, error: UpstreamError) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class ConnectionPool:
    """Keep-alive connections to one instance, opened on demand and reused LIFO."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        ssl_context: ssl.SSLContext | None,
        connect_timeout_s: float,
        max_idle: int,
        idle_timeout_s: float,
        max_response_bytes: int,
        deadlines: Deadlines | None = None,
    ) -> None:
        if endpoint.tls and ssl_context is None:
            raise ValueError(f"{endpoint.url} needs TLS but no client context was given")
        self.endpoint = endpoint
        self._ssl = ssl_context if endpoint.tls else None
        self._connect_timeout_s = connect_timeout_s
        self._max_idle = max_idle
        self._idle_timeout_s = idle_timeout_s
        self._max_response_bytes = max_response_bytes
        self._host_line = b"host: " + endpoint.authority + b"\r\n"
        self._idle: list[UpstreamConnection] = []
        self._busy: set[UpstreamConnection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._closed = False
        # Shared by the pools of one gateway; a pool of its own otherwise (tests).
        self.deadlines = deadlines if deadlines is not None else Deadlines()
        self.deadlines.add(self)

    def send(
        self,
        request_line: bytes,
        fields: bytes,
        body: bytes,
        *,
        head: bool,
        timeout_s: float,
        listener: ResponseListener,
        fresh: bool = False,
    ) -> None:
        """Send one request; `listener` is told how it ended, exactly once.

        `fields` are the header lines after Host, ending with the blank line. An idle
        connection is used when there is one (unless `fresh`), else one is opened.
        """
        parts = (request_line, self._host_line, fields, body)
        connection = None if fresh else self._take_idle()
        if connection is not None:
            self._busy.add(connection)
            connection.begin(parts, head, timeout_s, listener)
            return
        task = asyncio.get_running_loop().create_task(
            self._connect_and_begin(parts, head, timeout_s, listener)
        )
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def request(
        self,
        request_line: bytes,
        fields: bytes,
        body: bytes = b"",
        *,
        head: bool = False,
        timeout_s: float,
    ) -> UpstreamResponse:
        """Send an idempotent request and await its response.

        A reused connection that the upstream had closed while idle is retried once on a
        new connection.
        """
        loop = asyncio.get_running_loop()
        for fresh in (False, True):
            listener = _FutureListener(loop.create_future())
            self.send(
                request_line,
                fields,
                body,
                head=head,
                timeout_s=timeout_s,
                listener=listener,
                fresh=fresh,
            )
            try:
                return await listener.future
            except UpstreamReset as reset:
                if fresh or not reset.stale:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def release(self, connection: UpstreamConnection, *, reusable: bool) -> None:
        """A request on `connection` ended; keep it for the next one if it can be."""
        self._busy.discard(connection)
        if reusable and connection.usable and not self._closed and len(self._idle) < self._max_idle:
            connection.idle_since = connection.loop.time()
            self._idle.append(connection)
        else:
            connection.close()

    def forget(self, connection: UpstreamConnection) -> None:
        """A connection closed; make sure it is not handed out again."""
        if connection in self._idle:
            self._idle.remove(connection)

    def expire(self, now: float) -> bool:
        """Time out requests past their deadline; whether requests are still in progress."""
        busy = self._busy
        for connection in [c for c in busy if c.deadline <= now]:
            connection.expire()
        if self._closed and not busy:
            self.deadlines.discard(self)
        return bool(busy)

    def close(self) -> None:
        """Close idle connections now, busy ones when their response is in."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        if not self._busy:
            self.deadlines.discard(self)

    def abort(self) -> None:
        """Close everything now, requests in progress included (final shutdown)."""
        self.close()
        for connection in list(self._busy):
            connection.abort()
        for task in list(self._connecting):
            task.cancel()

    def _take_idle(self) -> UpstreamConnection | None:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.usable:
                continue
            if connection.loop.time() - connection.idle_since > self._idle_timeout_s:
                # LIFO: everything below the top is older still.
                connection.close()
                for stale in idle:
                    stale.close()
                idle.clear()
                return None
            return connection
        return None

    async def _connect_and_begin(
        self, parts: Sequence[bytes], head: bool, timeout_s: float, listener: ResponseListener
    ) -> None:
        # Cancelled only when the gateway shuts down: the listener's client is gone too,
        # and telling it would only make it retry elsewhere.
        try:
            connection = await self._connect()
        except UpstreamConnectError as error:
            listener.upstream_failed(error)
            return
        self._busy.add(connection)
        connection.begin(parts, head, timeout_s, listener)

    async def _connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        endpoint = self.endpoint
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(self, loop, self._max_response_bytes),
                    endpoint.host,
                    endpoint.port,
                    ssl=self._ssl,
                    server_hostname=endpoint.server_name if self._ssl is not None else None,
                )
        except OSError as error:  # refused, unreachable, TLS failure, timeout
            raise UpstreamConnectError(f"cannot connect to {endpoint.url}: {error!r}") from error
        return connection
