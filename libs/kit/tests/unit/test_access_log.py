"""A service's access line is the line the kit's logger (structlog + ecs-logging) writes."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from flotilla_kit.access_log import ServiceAccessLog
from flotilla_kit.context import RequestContext, reset_context, set_context
from flotilla_kit.logs import configure_logging, get_logger

CASES: list[dict[str, Any]] = [
    {"method": "GET", "path": "/api/v1/accounts/acc_1_ab", "route": "/api/v1/accounts/{account_id}",
     "status": 200, "duration_ns": 123_456, "request_id": "0af7651916cd43dd8448eb211c80319c",
     "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
     "client_ip": "127.0.0.1"},
    # Printable ASCII that JSON takes as it is, edges included; no client address.
    {"method": "DELETE", "path": "/a b[c]~!#$%&'()*+,-./:;<=>?@^_`{|}", "route": "<unmatched>",
     "status": 404, "duration_ns": 1, "request_id": "x:1.2_3-4", "trace_id": "0" * 31 + "1",
     "span_id": "1" * 16, "client_ip": None},
    # Values that need escaping.
    {"method": "POST", "path": '/a"b\\c/é\u2028\x00', "route": "/a/{b}", "status": 500,
     "duration_ns": 7, "request_id": "r-1", "trace_id": "f" * 32, "span_id": "e" * 16,
     "client_ip": "::1"},
]  # fmt: skip


def _ecs_logging_line(fields: dict[str, Any]) -> dict[str, Any]:
    """What the middleware wrote through structlog and ecs-logging before."""
    out = io.StringIO()
    configure_logging("accounts", "s0-1", "info", stream=out)
    token = set_context(
        RequestContext(fields["request_id"], fields["trace_id"], fields["span_id"], False)
    )
    try:
        get_logger("flotilla.access").info(
            "request",
            **{
                "http.request.method": fields["method"],
                "url.path": fields["path"],
                "http.route": fields["route"],
                "http.response.status_code": fields["status"],
                "event.duration": fields["duration_ns"],
                "client.ip": fields["client_ip"],
            },
        )
    finally:
        reset_context(token)
    line: dict[str, Any] = json.loads(out.getvalue())
    return line


@pytest.mark.parametrize("fields", CASES)
def test_the_line_equals_ecs_loggings(fields: dict[str, Any]) -> None:
    out = io.StringIO()
    log = ServiceAccessLog(service="accounts", node="accounts-s0-1", stream=out)
    log.record(**fields)
    log.flush()
    ours, theirs = json.loads(out.getvalue()), _ecs_logging_line(fields)
    assert list(ours) == list(theirs)  # the same keys, in the same order
    ours.pop("@timestamp"), theirs.pop("@timestamp")
    assert ours == theirs


async def test_lines_wait_for_their_batch_and_are_off_below_info() -> None:
    out = io.StringIO()
    log = ServiceAccessLog(service="s", node="s-0", stream=out, batch=2, flush_after_s=60)
    log.record(**CASES[0])
    assert out.getvalue() == ""  # collected; a flush is scheduled
    log.record(**CASES[1])  # the batch is full: written now
    assert out.getvalue().count("\n") == 2
    quiet = ServiceAccessLog(service="s", node="s-0", stream=out, enabled=False)
    quiet.record(**CASES[0])
    quiet.flush()
    assert out.getvalue().count("\n") == 2
