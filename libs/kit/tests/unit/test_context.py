from __future__ import annotations

import re

import pytest

from flotilla_kit.context import (
    RequestContext,
    new_ids,
    new_request_id,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    valid_request_id,
)


def test_a_valid_traceparent_is_parsed() -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    assert parse_traceparent(f"00-{trace}-b7ad6b7169203331-01") == (trace, True)
    assert parse_traceparent(f"00-{trace}-b7ad6b7169203331-00") == (trace, False)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",  # all-zero trace id is invalid
        "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ],
)
def test_invalid_traceparents_are_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_traceparent_is_rendered_back() -> None:
    ctx = RequestContext("r", "a" * 32, "b" * 16, sampled=False)
    assert ctx.traceparent() == f"00-{'a' * 32}-{'b' * 16}-00"


@pytest.mark.parametrize("value", ["abc", "0af7-11", "req:1.2_x"])
def test_harmless_request_ids_are_kept(value: str) -> None:
    assert valid_request_id(value) == value


@pytest.mark.parametrize("value", [None, "", "has space", "new\nline", "x" * 129, "<script>"])
def test_other_request_ids_are_replaced(value: str | None) -> None:
    assert valid_request_id(value) is None


def test_new_ids_are_w3c_shaped_nonzero_and_distinct() -> None:
    traces = {new_trace_id() for _ in range(1000)}
    spans = {new_span_id() for _ in range(1000)}
    requests = {new_request_id() for _ in range(1000)}
    assert len(traces) == len(spans) == len(requests) == 1000
    for ids, length in ((traces, 32), (spans, 16), (requests, 32)):
        assert all(re.fullmatch(f"[0-9a-f]{{{length}}}", i) for i in ids)
        assert "0" * length not in ids
    triples = [new_ids() for _ in range(1000)]
    for request_id, trace_id, span_id in triples:
        assert re.fullmatch("[0-9a-f]{32}", request_id)
        assert re.fullmatch("[0-9a-f]{32}", trace_id)
        assert trace_id != "0" * 32
        assert re.fullmatch("[0-9a-f]{16}", span_id)
        assert span_id != "0" * 16
    assert len({part for triple in triples for part in triple}) == 3000
    # What we make, we accept back from a client.
    assert parse_traceparent(f"00-{new_trace_id()}-{new_span_id()}-01") is not None
