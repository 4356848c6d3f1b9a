"""Client connections: HTTP/1.1 framing, keep-alive, pipelining in order, graceful close.

A connection parses with httptools as bytes arrive and hands complete requests to the
dispatcher one at a time: the next request starts only when the reply to the previous one
has been written, so replies leave in request order. Replies come back through `respond()`
(synchronously for errors, from an upstream callback for proxied requests). Reading pauses
when too many requests are queued, and dispatching waits while the transport's write
buffer is full.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import cast

from flotilla_gateway.dispatcher import Dispatcher
from flotilla_gateway.forwarding import TrustedProxies
from flotilla_gateway.headers import security_block
from flotilla_gateway.problems import ProblemCatalog
from flotilla_gateway.reply import Reply, status_line
from flotilla_gateway.request import Request, RequestReader
from flotilla_kit.logs import get_logger

__all__ = ["ClientConnection", "Connections", "ServerLimits"]

_log = get_logger("flotilla.gateway.server")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"
# Requests a client may have queued before the gateway stops reading from it.
_MAX_QUEUED = 16


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_header_bytes: int
    max_body_bytes: int
    keepalive_timeout_s: float
    request_read_timeout_s: float


class Connections:
    """Every client connection of one listener, for timeouts and graceful shutdown."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        problems: ProblemCatalog,
        limits: ServerLimits,
        *,
        tls: bool = False,
        trusted_proxies: TrustedProxies | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.trusted_proxies = trusted_proxies or None
        self.problems = problems
        self.limits = limits
        # Security header lines added to every reply: an API answer's, and a page's.
        self.security = security_block(tls=tls, page=False)
        self.security_of_page = security_block(tls=tls, page=True)
        self.closing = False
        # Open connections, and closed ones whose last reply is still being prepared.
        self._active: set[ClientConnection] = set()
        self._quiet = asyncio.Event()

    def __len__(self) -> int:
        return len(self._active)

    def protocol_factory(self, client_ip: str | None = None) -> ClientConnection:
        """A connection; `client_ip` when a PROXY header named the client."""
        return ClientConnection(self, client_ip)

    def sweep(self, now: float) -> None:
        """Close connections idle past the keep-alive timeout or too slow to send a request."""
        limits = self.limits
        for connection in list(self._active):
            connection.expire(now, limits.keepalive_timeout_s, limits.request_read_timeout_s)

    async def shutdown(self, grace_s: float) -> None:
        """Close idle connections now; give busy ones `grace_s` to answer, then cut them."""
        self.closing = True
        for connection in list(self._active):
            connection.shutdown()
        if not self._active:
            return
        try:
            async with asyncio.timeout(grace_s):
                await self._quiet.wait()
        except TimeoutError:
            _log.warning("cutting off requests still in flight", connections=len(self))
            for connection in list(self._active):
                connection.abort()

    def _add(self, connection: ClientConnection) -> None:
        self._active.add(connection)
        self._quiet.clear()

    def _discard(self, connection: ClientConnection) -> None:
        self._active.discard(connection)
        if not self._active:
            self._quiet.set()


class ClientConnection(asyncio.Protocol):
    def __init__(self, connections: Connections, client_ip: str | None = None) -> None:
        self._connections = connections
        self._client_ip = client_ip
        self._dispatcher = connections.dispatcher
        self._security = connections.security
        self._security_of_page = connections.security_of_page
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._reader: RequestReader | None = None
        self._queue: deque[Request] = deque()
        # The request being answered; the next one waits until its reply is written.
        self._current: Request | None = None
        self._dispatching = False
        self._closed = False
        # Set once a reply said `Connection: close`: nothing more is written.
        self._closing = False
        self._eof = False
        self._shutting_down = False
        self._reading_paused = False
        self._writing_paused = False
        self._continue_pending = False
        self._last_active = 0.0
        self._receiving_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        connections = self._connections
        limits = connections.limits
        client_ip = self._client_ip or (str(peer[0]) if isinstance(peer, tuple) else "unknown")
        proxies = connections.trusted_proxies
        self._reader = RequestReader(
            self,
            client_ip=client_ip,
            problems=connections.problems,
            max_header_bytes=limits.max_header_bytes,
            max_body_bytes=limits.max_body_bytes,
            proxies=proxies if proxies is not None and proxies.trusts(client_ip) else None,
        )
        self._last_active = self._loop.time()
        self._connections._add(self)
        if self._connections.closing:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        assert reader is not None
        now = self._last_active = self._loop.time()
        was_receiving = reader.receiving
        reader.feed(data)
        if reader.receiving and not was_receiving:
            self._receiving_since = now

    def eof_received(self) -> bool | None:
        # The client will send nothing more: answer what it sent, then close.
        self._eof = True
        return self._busy  # False lets the transport close itself right away

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._closing = True
        self._queue.clear()
        if not self._busy:
            self._connections._discard(self)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._current is None and not self._dispatching:
            self._next()

    @property
    def _busy(self) -> bool:
        return self._current is not None or bool(self._queue)

    # RequestSink

    def request_received(self, request: Request) -> None:
        if self._current is not None or self._queue or self._writing_paused:
            self._queue.append(request)
            if len(self._queue) >= _MAX_QUEUED and not self._reading_paused:
                self._reading_paused = True
                assert self._transport is not None
                self._transport.pause_reading()
            return
        self._dispatch(request)

    def continue_expected(self) -> None:
        # A 100 Continue must not overtake replies still owed to earlier requests.
        transport = self._transport
        assert transport is not None
        if self._busy:
            self._continue_pending = True
        elif not transport.is_closing():
            transport.write(_CONTINUE)

    # Responder

    def respond(self, request: Request, reply: Reply) -> None:
        if request is not self._current:
            return  # the connection was cut while the reply was being prepared
        self._current = None
        if self._closed:
            self._connections._discard(self)
            return
        if self._closing or self._write(request, reply):
            return
        if not self._dispatching:
            # Called back later (from an upstream response): carry on with the queue.
            self._next()

    # lifecycle

    def shutdown(self) -> None:
        """Answer the request in progress (with `Connection: close`), then close."""
        self._shutting_down = True
        self._queue.clear()
        if self._current is None and self._transport is not None:
            self._transport.close()

    def expire(self, now: float, keepalive_timeout_s: float, read_timeout_s: float) -> None:
        if self._busy or self._closed or self._transport is None or self._reader is None:
            return
        if self._reader.receiving:
            if now - self._receiving_since > read_timeout_s:
                self._transport.abort()  # too slow to be worth an answer
        elif now - self._last_active > keepalive_timeout_s:
            self._transport.close()

    def abort(self) -> None:
        """Cut the connection; a reply still being prepared is dropped."""
        self._current = None
        self._queue.clear()
        if self._transport is not None:
            self._transport.abort()
        self._connections._discard(self)

    # internals

    def _dispatch(self, request: Request) -> None:
        """Answer `request` and then, while replies come synchronously, the queued ones."""
        self._dispatching = True
        try:
            while True:
                self._current = request
                self._dispatcher.dispatch(request, self)
                if self._pending() or self._closing or self._writing_paused:
                    return  # the reply comes later; `respond()` or `resume_writing()` goes on
                if not self._queue:
                    self._idle()
                    return
                request = self._next_queued()
        finally:
            self._dispatching = False

    def _pending(self) -> bool:
        """Whether the reply to the current request is still to come."""
        return self._current is not None

    def _next(self) -> None:
        if self._closing or self._shutting_down:
            return
        if self._queue:
            self._dispatch(self._next_queued())
        else:
            self._idle()

    def _next_queued(self) -> Request:
        request = self._queue.popleft()
        if self._reading_paused and len(self._queue) < _MAX_QUEUED // 2:
            self._reading_paused = False
            assert self._transport is not None
            self._transport.resume_reading()
        return request

    def _idle(self) -> None:
        transport = self._transport
        assert transport is not None
        if self._closing or transport.is_closing():
            return
        if self._eof:
            transport.close()
        elif self._continue_pending:
            self._continue_pending = False
            transport.write(_CONTINUE)

    def _write(self, request: Request, reply: Reply) -> bool:
        """Send one reply; True when the connection is closed after it."""
        transport = self._transport
        assert transport is not None
        if transport.is_closing():
            # Reset by the client; connection_lost is on its way.
            self._closing = True
            return True
        close = reply.close or not request.keep_alive or self._shutting_down
        if close:
            connection = _CLOSE
        elif request.http10:
            connection = _KEEP_ALIVE
        else:
            connection = b""
        body = b"" if request.method == b"HEAD" else reply.body
        security = self._security_of_page if reply.page else self._security
        transport.write(
            b"".join((status_line(reply.status), reply.head, security, connection, b"\r\n", body))
        )
        self._last_active = self._loop.time()
        if close:
            self._closing = True
            self._queue.clear()
            transport.close()
        return close
