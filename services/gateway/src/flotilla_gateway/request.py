"""Requests as the gateway reads them from a client connection.

`RequestReader` is the httptools callback object of one connection: it filters header
fields as they are parsed (hop-by-hop and spoofable ones never reach a `Request`), keeps
the few the gateway acts on, enforces the size limits, and hands each complete request to
its sink in arrival order. A request that must be refused is handed over too, with
`error` set, so the refusal is answered in order after the requests before it.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import unquote

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from flotilla_gateway.forwarding import TrustedProxies
from flotilla_gateway.headers import (
    AUTHORIZATION,
    CONNECTION,
    CONTENT_LENGTH,
    EXPECT,
    FORWARDED_FOR,
    HOST,
    IDEMPOTENCY_KEY,
    PASS,
    REQUEST_ID,
    REQUEST_KINDS,
    TRACEPARENT,
    TRACESTATE,
    connection_tokens,
    drop_nominated,
)
from flotilla_gateway.problems import ProblemCatalog, ProblemTemplate
from flotilla_gateway.routes import is_safe_path
from flotilla_kit.logs import get_logger
from flotilla_kit.text import refusal

__all__ = ["Request", "RequestReader", "RequestSink"]

_log = get_logger("flotilla.gateway.request")
_KNOWN_KINDS = REQUEST_KINDS.known


class Request:
    """One request from a client: what to forward, and the fields the gateway acts on."""

    __slots__ = (
        "authorization",
        "body",
        "client_ip",
        "error",
        "expect_continue",
        "host",
        "http10",
        "idempotency_key",
        "keep_alive",
        "lines",
        "method",
        "path",
        "request_id",
        "target",
        "traceparent",
        "tracestate",
    )

    def __init__(self, client_ip: str) -> None:
        self.method = b""
        # The request target as sent (path and query), forwarded unchanged.
        self.target = b""
        # The path alone, for routing and logs.
        self.path = ""
        # Header fields to forward, rendered `name: value\r\n` in their original spelling.
        self.lines: list[bytes] = []
        self.host: bytes | None = None
        self.authorization: bytes | None = None
        self.request_id: bytes | None = None
        self.traceparent: bytes | None = None
        self.tracestate: bytes | None = None
        self.body = b""
        self.keep_alive = False
        self.http10 = False
        self.expect_continue = False
        # The client sent an `Idempotency-Key`: a write that may be retried elsewhere.
        self.idempotency_key = False
        self.client_ip = client_ip
        # Set when the request is refused before routing (malformed, too large, ...).
        self.error: ProblemTemplate | None = None


class RequestSink(Protocol):
    def request_received(self, request: Request) -> None: ...

    def continue_expected(self) -> None: ...


class _Reject(Exception):
    """Raised inside a parser callback to stop reading and answer with `problem`."""

    def __init__(self, problem: ProblemTemplate) -> None:
        super().__init__(problem.slug)
        self.problem = problem


class RequestReader:
    """The parser callbacks of one client connection."""

    def __init__(
        self,
        sink: RequestSink,
        *,
        client_ip: str,
        problems: ProblemCatalog,
        max_header_bytes: int,
        max_body_bytes: int,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self._sink = sink
        self._client_ip = client_ip
        # Set when the peer is a trusted proxy: its X-Forwarded-For names the client.
        self._proxies = proxies
        self._forwarded_for: bytes | None = None
        self._problems = problems
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes
        self._parser = HttpRequestParser(self)
        # True once no further request will be read: the client asked to close, or the
        # input could not be parsed. Later bytes are ignored.
        self.done = False
        self.receiving = False
        self._in_head = False
        self._request = Request(client_ip)
        self._url = b""
        self._head_bytes = 0
        self._unparsed_head_bytes = 0
        self._body: list[bytes] | None = None
        self._body_bytes = 0
        self._declared_length = 0
        self._nominated: frozenset[bytes] | None = None

    def feed(self, data: bytes) -> None:
        while not self.done:
            try:
                self._parser.feed_data(data)
            except HttpParserUpgrade as upgrade:
                # Upgrades (h2c, websocket) are not offered: the request was answered as
                # plain HTTP/1.1, and what follows it is read as the next request.
                data = data[upgrade.args[0] :]
                continue
            except HttpParserCallbackError as error:
                reason = error.__context__
                if isinstance(reason, _Reject):
                    self._fail(reason.problem)
                else:
                    _log.error("request handling failed", exc_info=reason or error)
                    self._fail(self._problems.internal_error)
            except HttpParserError:
                # Bytes after a `Connection: close` request are an error to llhttp; they
                # are simply never read.
                if not self.done:
                    self._fail(self._problems.bad_request)
            else:
                if self._in_head:
                    # A single endless field line is only reported when it ends: bound
                    # what the parser buffers meanwhile by counting bytes still in the head.
                    self._unparsed_head_bytes += len(data)
                    if self._unparsed_head_bytes > self._max_header_bytes:
                        self._fail(self._problems.header_too_large)
            return

    def _fail(self, problem: ProblemTemplate) -> None:
        request = self._request if self.receiving else Request(self._client_ip)
        request.error = problem
        request.keep_alive = False
        self.done = True
        self.receiving = False
        self._sink.request_received(request)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._request = Request(self._client_ip)
        self._url = b""
        self._head_bytes = 0
        self._unparsed_head_bytes = 0
        self._body = None
        self._body_bytes = 0
        self._declared_length = 0
        self._nominated = None
        self._forwarded_for = None
        self._in_head = True
        self.receiving = True

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self._max_header_bytes:
            raise _Reject(self._problems.header_too_large)
        self._url += url

    # One flat if-chain: on the hot path it is cheaper than a table of bound methods.
    def on_header(self, name: bytes, value: bytes) -> None:  # noqa: PLR0912
        if not self._in_head:
            return  # a trailer field after a chunked body: never forwarded
        size = self._head_bytes + len(name) + len(value) + 4
        if size > self._max_header_bytes:
            raise _Reject(self._problems.header_too_large)
        self._head_bytes = size
        kind = _KNOWN_KINDS.get(name)
        if kind is None:
            kind = REQUEST_KINDS(name)
        request = self._request
        if kind == PASS:
            request.lines.append(name + b": " + value + b"\r\n")
        elif kind == AUTHORIZATION:
            if request.authorization is not None:
                raise _Reject(self._problems.bad_request)  # which one would a service check?
            request.authorization = value
            request.lines.append(name + b": " + value + b"\r\n")
        elif kind == HOST:
            if request.host is not None:
                raise _Reject(self._problems.bad_request)  # RFC 9112 3.2
            request.host = value
        elif kind == REQUEST_ID:
            request.request_id = value
        elif kind == TRACEPARENT:
            request.traceparent = value
        elif kind == TRACESTATE:
            line = name + b": " + value + b"\r\n"
            request.tracestate = line if request.tracestate is None else request.tracestate + line
        elif kind == CONTENT_LENGTH:
            self._declared_length = int(value)  # llhttp has checked it is digits, and unique
        elif kind == CONNECTION:
            tokens = connection_tokens(value)
            self._nominated = tokens if self._nominated is None else self._nominated | tokens
        elif kind == EXPECT:
            request.expect_continue = value.strip().lower() == b"100-continue"
        elif kind == IDEMPOTENCY_KEY:
            request.idempotency_key = bool(value.strip())
            request.lines.append(name + b": " + value + b"\r\n")
        elif kind == FORWARDED_FOR and self._proxies is not None:
            forwarded = self._forwarded_for
            self._forwarded_for = value if forwarded is None else forwarded + b"," + value
        # Anything else in the table is hop-by-hop or spoofable: dropped.

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        request = self._request
        method = request.method = parser.get_method()
        keep_alive = request.keep_alive = parser.should_keep_alive()
        nominated = self._nominated
        # The version matters only in these cases (asking httptools for it costs more than
        # the rest of this method): an HTTP/1.0 request is kept alive only if it says
        # `Connection: keep-alive`, and may lack Host or an Expect it can act on.
        if (
            (keep_alive and nominated is not None and b"keep-alive" in nominated)
            or request.host is None
            or request.expect_continue
        ):
            request.http10 = parser.get_http_version() == "1.0"
        if method == b"CONNECT":
            raise _Reject(self._problems.connect_not_allowed)
        if request.host is None and not request.http10:
            raise _Reject(self._problems.missing_host)
        if self._declared_length > self._max_body_bytes:
            raise _Reject(self._problems.payload_too_large)
        url = self._url
        query = url.find(b"?")
        path = (url if query < 0 else url[:query]).decode("latin-1")
        request.target = url
        request.path = path
        if not is_safe_path(path):
            request.error = self._problems.bad_path
        elif "%" in path and refusal(unquote(path)) is not None:
            request.error = self._problems.refused_path
        if nominated is not None:
            request.lines = drop_nominated(request.lines, nominated)
        if self._forwarded_for is not None and self._proxies is not None:
            request.client_ip = self._proxies.client(self._client_ip, self._forwarded_for)
        if request.expect_continue and not request.http10:
            self._sink.continue_expected()

    def on_body(self, body: bytes) -> None:
        size = self._body_bytes + len(body)
        if size > self._max_body_bytes:
            raise _Reject(self._problems.payload_too_large)
        self._body_bytes = size
        if self._body is None:
            self._body = [body]
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        body = self._body
        if body is not None:
            request.body = body[0] if len(body) == 1 else b"".join(body)
        self.receiving = False
        if not request.keep_alive:
            self.done = True
        self._sink.request_received(request)
