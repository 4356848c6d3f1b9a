"""The request reader with the real httptools parser: filtering, limits, framing."""

from __future__ import annotations

import pytest

from flotilla_gateway.problems import ProblemCatalog
from flotilla_gateway.request import Request, RequestReader

MAX_BODY = 64
MAX_HEADER = 512
PROBLEMS = ProblemCatalog(max_body_bytes=MAX_BODY, max_header_bytes=MAX_HEADER)


class Sink:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.continues = 0

    def request_received(self, request: Request) -> None:
        self.requests.append(request)

    def continue_expected(self) -> None:
        self.continues += 1


def read(*chunks: bytes) -> tuple[Sink, RequestReader]:
    sink = Sink()
    reader = RequestReader(
        sink,
        client_ip="10.0.0.7",
        problems=PROBLEMS,
        max_header_bytes=MAX_HEADER,
        max_body_bytes=MAX_BODY,
    )
    for chunk in chunks:
        reader.feed(chunk)
    return sink, reader


def only(sink: Sink) -> Request:
    assert len(sink.requests) == 1
    return sink.requests[0]


def names(request: Request) -> list[bytes]:
    return [line.split(b":", 1)[0].lower() for line in request.lines]


def test_a_plain_request() -> None:
    sink, reader = read(
        b"GET /api/v1/accounts/7?full=1 HTTP/1.1\r\nHost: gw:8443\r\nX-A: b\r\n\r\n"
    )
    request = only(sink)
    assert request.method == b"GET"
    assert request.target == b"/api/v1/accounts/7?full=1"
    assert request.path == "/api/v1/accounts/7"
    assert request.host == b"gw:8443"
    assert request.lines == [b"X-A: b\r\n"]
    assert request.keep_alive
    assert not request.http10
    assert request.client_ip == "10.0.0.7"
    assert request.error is None
    assert not reader.done


def test_hop_by_hop_and_spoofable_fields_are_dropped() -> None:
    sink, _ = read(
        b"GET /x HTTP/1.1\r\nHost: h\r\n"
        b"Connection: keep-alive, X-Secret-Hop\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
        b"Trailer: X-T\r\nUpgrade: h2c\r\nProxy-Authorization: Basic x\r\n"
        b"Proxy-Connection: keep-alive\r\nX-Secret-Hop: 1\r\n"
        b"X-User-Id: admin\r\nx-user-roles: admin\r\nX-Forwarded-For: 1.2.3.4\r\n"
        b"X-Forwarded-Host: evil\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n"
        b"Content-Length: 0\r\nAccept: */*\r\nX-Userland: kept\r\n\r\n"
    )
    request = only(sink)
    assert names(request) == [b"accept", b"x-userland"]


def test_fields_the_gateway_acts_on_are_taken_out_or_kept_as_needed() -> None:
    sink, _ = read(
        b"GET /x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer abc\r\nX-Request-Id: r-1\r\n"
        b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
        b"tracestate: a=1\r\nExpect: 100-continue\r\n\r\n"
    )
    request = only(sink)
    assert request.authorization == b"Bearer abc"
    assert request.request_id == b"r-1"
    assert request.traceparent is not None
    assert request.traceparent.startswith(b"00-0af7")
    assert request.tracestate == b"tracestate: a=1\r\n"
    assert request.expect_continue
    # Authorization is forwarded unchanged; the rest is re-emitted by the dispatcher.
    assert names(request) == [b"authorization"]
    assert sink.continues == 1


def test_chunked_body_is_de_chunked_and_trailers_dropped() -> None:
    sink, _ = read(
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n",
        b"6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    request = only(sink)
    assert request.body == b"hello world"
    assert request.lines == []


def test_pipelined_requests_come_out_in_order() -> None:
    sink, _ = read(
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
        b"\r\nabcGET /3 HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert [r.path for r in sink.requests] == ["/1", "/2", "/3"]
    assert sink.requests[1].body == b"abc"


def test_a_request_split_anywhere_reads_the_same() -> None:
    raw = b"PUT /a/b?c=d HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 4\r\n\r\nbody"
    for split in range(1, len(raw)):
        sink, _ = read(raw[:split], raw[split:])
        request = only(sink)
        assert (request.target, request.lines, request.body) == (
            b"/a/b?c=d",
            [b"X-A: 1\r\n"],
            b"body",
        )


def test_http_10_and_connection_close() -> None:
    sink, reader = read(b"GET /x HTTP/1.0\r\n\r\n")
    request = only(sink)
    assert request.http10
    assert not request.keep_alive
    assert reader.done

    sink, _ = read(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert only(sink).keep_alive
    assert only(sink).http10  # so its reply says `Connection: keep-alive`

    for head in (b"", b"Connection: keep-alive\r\n", b"Expect: 100-continue\r\n"):
        sink, _ = read(b"GET /x HTTP/1.1\r\nHost: h\r\n" + head + b"\r\n")
        assert only(sink).keep_alive
        assert not only(sink).http10

    sink, reader = read(
        b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /y HTTP/1.1\r\n"
    )
    assert not only(sink).keep_alive
    assert reader.done  # what follows a `Connection: close` request is never read


@pytest.mark.parametrize(
    "raw",
    [
        b"HELLO WORLD\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost h\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
        b"GET /x HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_requests_are_refused_and_reading_stops(raw: bytes) -> None:
    sink, reader = read(raw, b"GET /y HTTP/1.1\r\nHost: h\r\n\r\n")
    request = only(sink)
    assert request.error is not None
    assert request.error.status == 400
    assert request.error.close
    assert not request.keep_alive
    assert reader.done


def test_connect_is_refused() -> None:
    sink, _ = read(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    request = only(sink)
    assert request.error is not None
    assert request.error.status == 405


def test_dot_segments_get_a_400_but_the_connection_stays_usable() -> None:
    sink, reader = read(b"GET /api/v1/auth/../accounts HTTP/1.1\r\nHost: h\r\n\r\n")
    request = only(sink)
    assert request.error is PROBLEMS.bad_path
    assert request.keep_alive
    assert not reader.done


@pytest.mark.parametrize(
    "target", [b"/api/v1/accounts/acc_0%00x", b"/a/%0Ab", b"/a/%E2%80%AEevil", b"/a/%1b[2J"]
)
def test_an_encoded_control_in_the_path_gets_a_422_and_the_connection_stays_usable(
    target: bytes,
) -> None:
    sink, reader = read(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    request = only(sink)
    assert request.error is PROBLEMS.refused_path
    assert request.error.status == 422
    assert request.keep_alive
    assert not reader.done


def test_encoded_ordinary_text_in_the_path_passes() -> None:
    sink, _ = read(b"GET /api/v1/products/caf%C3%A9%20au%20lait HTTP/1.1\r\nHost: h\r\n\r\n")
    assert only(sink).error is None


def test_declared_body_over_the_limit_is_refused_before_it_arrives() -> None:
    sink, reader = read(
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 65\r\nExpect: 100-continue\r\n\r\n"
    )
    request = only(sink)
    assert request.error is PROBLEMS.payload_too_large
    assert sink.continues == 0  # the client is not invited to send it
    assert reader.done


def test_chunked_body_over_the_limit_is_refused() -> None:
    chunk = b"20\r\n" + b"x" * 32 + b"\r\n"
    sink, _ = read(b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", chunk * 3)
    assert only(sink).error is PROBLEMS.payload_too_large


def test_body_at_the_limit_is_accepted() -> None:
    sink, _ = read(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 64\r\n\r\n" + b"x" * 64)
    assert only(sink).body == b"x" * 64


def test_header_fields_over_the_limit_are_refused() -> None:
    sink, _ = read(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Big: " + b"y" * MAX_HEADER + b"\r\n\r\n")
    assert only(sink).error is PROBLEMS.header_too_large


def test_an_endless_header_line_is_refused_before_it_ends() -> None:
    sink, reader = read(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Big: ", *([b"y" * 100] * 6))
    assert only(sink).error is PROBLEMS.header_too_large
    assert reader.done


def test_an_upgrade_is_ignored_and_the_request_answered_as_http_11() -> None:
    sink, _ = read(
        b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert [r.path for r in sink.requests] == ["/x", "/y"]
    assert sink.requests[0].lines == []  # Connection named HTTP2-Settings: dropped too


def test_an_idempotency_key_is_noted_and_forwarded() -> None:
    sink, _ = read(
        b"POST /api/v1/transfers HTTP/1.1\r\nHost: gw\r\nIdempotency-Key: k-1\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    request = only(sink)
    assert request.idempotency_key
    assert request.lines == [b"Idempotency-Key: k-1\r\n"]
    sink, _ = read(
        b"POST /x HTTP/1.1\r\nHost: gw\r\nIdempotency-Key: \r\nContent-Length: 0\r\n\r\n"
    )
    assert not only(sink).idempotency_key  # an empty key makes nothing safe to repeat
    sink, _ = read(b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n")
    assert not only(sink).idempotency_key
