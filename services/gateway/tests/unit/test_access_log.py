"""The gateway's own access line is the line the kit's logger (ecs-logging) would write."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from flotilla_gateway.access_log import AccessLog
from flotilla_kit.logs import configure_logging, get_logger

CASES: list[dict[str, Any]] = [
    {"method": b"GET", "path": "/api/v1/accounts", "route": "/api/v1/accounts", "status": 200, "duration_ns": 123_456,
     "request_id": "0af7651916cd43dd8448eb211c80319c", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
     "instance": "accounts-s1-0", "user_id": "alice", "client_ip": "127.0.0.1"},
    # Printable ASCII that JSON takes as it is (the fast path), edges included.
    {"method": b"DELETE", "path": "/a b[c]~!#$%&'()*+,-./:;<=>?@^_`{|}", "route": "/a {b}", "status": 204,
     "duration_ns": 1, "request_id": "x", "trace_id": "0" * 31 + "1", "instance": "i",
     "user_id": "service:payments", "client_ip": "10.0.0.1"},
    # A % in what the line's template keeps (route, instance, user) is text, not a hole.
    {"method": b"GET", "path": "/a%20b", "route": "/a/%s%d", "status": 200, "duration_ns": 5,
     "request_id": "r-2", "trace_id": None, "instance": "i%s", "user_id": "100%", "client_ip": "::1"},
    # Nothing known yet, and values that need escaping.
    {"method": b"POST", "path": '/a"b\\c/é\u2028', "route": "<unmatched>", "status": 401, "duration_ns": 7,
     "request_id": "r-1", "trace_id": None, "instance": None, "user_id": 'eve"}', "client_ip": "::1"},
]  # fmt: skip


def _ecs_logging_line(fields: dict[str, Any]) -> dict[str, Any]:
    """What the access log wrote through structlog and ecs-logging before."""
    out = io.StringIO()
    configure_logging("gateway", "3", "info", stream=out)
    get_logger("flotilla.access").info(
        "request",
        http={
            "request": {"method": fields["method"].decode("latin-1"), "id": fields["request_id"]},
            "response": {"status_code": fields["status"]},
            "route": fields["route"],
        },
        url={"path": fields["path"]},
        trace={"id": fields["trace_id"]},
        upstream={"instance": fields["instance"]},
        user={"id": fields["user_id"]},
        client={"ip": fields["client_ip"]},
        **{"event.duration": fields["duration_ns"]},
    )
    line: dict[str, Any] = json.loads(out.getvalue())
    return line


@pytest.mark.parametrize("fields", CASES)
def test_the_line_equals_ecs_loggings(fields: dict[str, Any]) -> None:
    out = io.StringIO()
    AccessLog(node="gateway-3", stream=out).record(**fields)
    ours, theirs = json.loads(out.getvalue()), _ecs_logging_line(fields)
    assert list(ours) == list(theirs)  # the same keys, in the same order
    ours.pop("@timestamp"), theirs.pop("@timestamp")
    assert ours == theirs


def test_the_timestamp_is_ecs_utc_with_milliseconds() -> None:
    out = io.StringIO()
    AccessLog(stream=out).record(**CASES[0])
    stamp = json.loads(out.getvalue())["@timestamp"]
    assert len(stamp) == len("2026-11-25T15:12:45.174Z")
    assert stamp[10] == "T"
    assert stamp.endswith("Z")


async def test_lines_are_written_in_batches_off_the_request_path() -> None:
    out = io.StringIO()
    log = AccessLog(stream=out, batch=3, flush_after_s=60)
    log.record(**CASES[0])
    log.record(**CASES[1])
    assert out.getvalue() == ""  # collected, a flush is scheduled
    log.record(**CASES[0])  # the batch is full: written now
    assert out.getvalue().count("\n") == 3  # (a path may hold U+2028: not a line end)
    log.record(**CASES[1])
    log.flush()  # as at shutdown
    assert out.getvalue().count("\n") == 4
