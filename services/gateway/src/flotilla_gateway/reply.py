"""What the gateway sends back: a status, ready-made header lines and a body.

Headers are kept as one pre-rendered block so writing a response is a single join.
Status lines are rendered once per status code.
"""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, NamedTuple

__all__ = ["Reply", "bytes_reply", "http_date_line", "json_reply", "status_line"]


class Reply(NamedTuple):
    """A response without its status line, `Connection` header and final blank line.

    `head` holds complete header lines (`name: value\\r\\n`), including Content-Length and
    X-Request-Id; the connection adds the rest, security headers included. `close` asks it
    to close the connection afterwards (the request could not be framed safely). `page`
    True: an HTML page for a browser (the web service's pages, the API docs), which gets
    the page Content-Security-Policy (the gateway's own scripts, styles and images, nothing
    inline) instead of the API's (nothing at all).
    """

    status: int
    head: bytes
    body: bytes
    close: bool = False
    page: bool = False


_STATUS_LINES: dict[int, bytes] = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode("latin-1")
    for status in HTTPStatus
}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        # Upstreams may use codes the standard library does not name; the phrase is optional.
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d \r\n" % status
    return line


_date_second = 0
_date_line = b""


def http_date_line() -> bytes:
    """`date: ...` for responses the gateway makes itself, rendered at most once a second."""
    global _date_second, _date_line  # noqa: PLW0603 - a one-entry cache, process-wide on purpose
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_line = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
    return _date_line


def json_reply(
    status: int,
    document: Any,
    request_id: str,
    *,
    content_type: bytes = b"application/json",
    extra_head: bytes = b"",
) -> Reply:
    body = json.dumps(document, separators=(",", ":")).encode()
    return bytes_reply(status, body, request_id, content_type=content_type, extra_head=extra_head)


def bytes_reply(
    status: int,
    body: bytes,
    request_id: str,
    *,
    content_type: bytes,
    extra_head: bytes = b"",
    close: bool = False,
    page: bool = False,
) -> Reply:
    head = b"".join(
        (
            b"content-type: ",
            content_type,
            b"\r\n",
            extra_head,
            http_date_line(),
            b"x-request-id: ",
            request_id.encode("ascii"),
            b"\r\ncontent-length: %d\r\n" % len(body),
        )
    )
    return Reply(status, head, body, close, page)
