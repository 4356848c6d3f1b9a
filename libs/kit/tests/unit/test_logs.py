from __future__ import annotations

import io
import json
import logging
from typing import Any

import structlog

from flotilla_kit.context import RequestContext, reset_context, set_context
from flotilla_kit.logs import configure_logging, get_logger


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def field(line: dict[str, Any], dotted: str) -> Any:
    """ECS allows `a.b` as a dotted key or as nested objects; Elasticsearch reads both."""
    if dotted in line:
        return line[dotted]
    node: Any = line
    for part in dotted.split("."):
        node = node[part]
    return node


def test_lines_are_ecs_json_with_service_and_request_context() -> None:
    stream = io.StringIO()
    configure_logging("accounts", "1", "info", stream)
    try:
        token = set_context(RequestContext("req-1", "a" * 32, "b" * 16))
        try:
            get_logger("t").info("hello", **{"user.id": "u1"})
            logging.getLogger("sqlalchemy.engine").warning("from the standard library")
        finally:
            reset_context(token)
        get_logger("t").debug("filtered out at info level")
        [ours, stdlib] = _lines(stream)
        assert ours["message"] == "hello"
        assert field(ours, "log.level") == "info"
        assert field(ours, "service.name") == "accounts"
        assert field(ours, "service.node.name") == "accounts-1"
        assert field(ours, "http.request.id") == "req-1"
        assert field(ours, "trace.id") == "a" * 32
        assert field(ours, "span.id") == "b" * 16
        assert field(ours, "user.id") == "u1"
        assert ours["@timestamp"].endswith("Z")
        assert "ecs.version" in ours
        assert stdlib["message"] == "from the standard library"
        assert field(stdlib, "log.level") == "warning"
        assert field(stdlib, "log.logger") == "sqlalchemy.engine"
        assert field(stdlib, "http.request.id") == "req-1"
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = []


def test_exceptions_are_logged_as_ecs_error_fields() -> None:
    stream = io.StringIO()
    configure_logging("auth", "0", "info", stream)
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            get_logger("t").exception("failed")
        [line] = _lines(stream)
        assert "ValueError: boom" in field(line, "error.stack_trace")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = []


def test_a_plain_error_or_url_goes_to_the_ecs_field_for_it() -> None:
    """ECS's `error` and `url` are objects: Elasticsearch refuses a line with a string there."""
    stream = io.StringIO()
    configure_logging("gateway", "0", "info", stream)
    try:
        get_logger("t").warning("could not fetch", error=repr(TimeoutError()), url="https://a/b")
        get_logger("t").warning("already right", **{"error.message": "x", "url.full": "y"})
        logging.getLogger("some.library").warning("from the standard library", extra={})
        [plain, dotted, _] = _lines(stream)
        assert field(plain, "error.message") == "TimeoutError()"
        assert field(plain, "url.full") == "https://a/b"
        assert not isinstance(plain.get("error", {}), str)
        assert not isinstance(plain.get("url", {}), str)
        assert (field(dotted, "error.message"), field(dotted, "url.full")) == ("x", "y")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = []
