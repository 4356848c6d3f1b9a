"""CloudEvent: what it writes, that it reads back what it wrote, and each way a payload can
be refused (with the reason a dead letter carries)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from flotilla_kit.context import RequestContext, reset_context, set_context
from flotilla_kit.events import MAX_EVENT_BYTES, CloudEvent, MalformedEvent, nats_subject

ID = "5b0d7c3e-8f1a-4c2b-9d6e-0a1b2c3d4e5f"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def document(**changes: Any) -> dict[str, Any]:
    """A valid event as JSON would hold it; `changes` replace attributes (None removes)."""
    found: dict[str, Any] = {
        "specversion": "1.0",
        "id": ID,
        "source": "/flotilla/orders",
        "type": "flotilla.orders.order_confirmed",
        "time": "2030-01-02T03:04:05.123456Z",
        "datacontenttype": "application/json",
        "subject": "ord_1",
        "data": {"order_id": "ord_1", "total_minor": 2_500},
    }
    for key, value in changes.items():
        if value is None:
            found.pop(key)
        else:
            found[key] = value
    return found


def raw(**changes: Any) -> bytes:
    return json.dumps(document(**changes)).encode()


def test_new_fills_the_envelope() -> None:
    before = dt.datetime.now(dt.UTC)
    event = CloudEvent.new("payments", "transfer_committed", {"amount_minor": 5}, subject="t-1")
    assert uuid.UUID(event.id).version == 4
    assert event.source == "/flotilla/payments"
    assert event.type == "flotilla.payments.transfer_committed"
    assert event.service == "payments"
    assert event.subject == "t-1"
    assert event.data == {"amount_minor": 5}
    assert before <= event.time <= dt.datetime.now(dt.UTC)
    assert event.traceparent is None  # no request in progress
    assert CloudEvent.new("payments", "x", {}).id != event.id


def test_new_carries_the_current_trace_context() -> None:
    token = set_context(
        RequestContext("req-1", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    )
    try:
        event = CloudEvent.new("orders", "order_confirmed", {})
    finally:
        reset_context(token)
    assert event.traceparent == TRACEPARENT


@pytest.mark.parametrize(
    ("service", "name"),
    [("Orders", "x"), ("orders", "order.confirmed"), ("orders", "*"), ("", "x"), ("orders", ">")],
)
def test_new_refuses_names_that_are_not_one_subject_token(service: str, name: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        CloudEvent.new(service, name, {})


def test_json_round_trip() -> None:
    token = set_context(
        RequestContext("req-1", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    )
    try:
        event = CloudEvent.new(
            "inventory", "stock_changed", {"sku": "Ünïcode ☕", "lines": [{"q": 1}], "none": None},
            subject="prd_1",
        )  # fmt: skip
    finally:
        reset_context(token)
    again = CloudEvent.from_json(event.to_json(), arrived_on=event.type)
    assert again == event
    written = json.loads(event.to_json())
    assert written["specversion"] == "1.0"
    assert written["datacontenttype"] == "application/json"
    assert written["time"].endswith("Z")
    assert written["traceparent"] == TRACEPARENT


def test_optional_attributes_are_left_out_and_read_back_as_none() -> None:
    event = CloudEvent.new("orders", "order_cancelled", {"reason": "out-of-stock"})
    written = json.loads(event.to_json())
    assert "subject" not in written
    assert "traceparent" not in written
    assert CloudEvent.from_json(event.to_json()) == event


def test_time_in_another_zone_or_with_nanoseconds_is_read_as_utc() -> None:
    event = CloudEvent.from_json(raw(time="2030-01-02T05:04:05.123456789+02:00"))
    assert event.time == dt.datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
    assert CloudEvent.from_json(raw(time="2030-01-02T03:04:05Z")).time.microsecond == 0


MALFORMED: list[tuple[str, bytes, str]] = [
    ("not json", b"{nope", "not JSON"),
    ("not utf-8", b'{"id": "\xff"}', "not UTF-8"),
    ("a list", b"[1, 2]", "not a JSON object"),
    ("NaN", raw().replace(b"2500", b"NaN"), "NaN is not JSON"),
    ("duplicate key", raw()[:-1] + b', "id": "x"}', "duplicate key 'id'"),
    ("specversion 0.3", raw(specversion="0.3"), "specversion is not 1.0"),
    ("no specversion", raw(specversion=None), "specversion is missing"),
    ("no id", raw(id=None), "id is missing"),
    ("no source", raw(source=None), "source is missing"),
    ("no type", raw(type=None), "type is missing"),
    ("no time", raw(time=None), "time is missing"),
    ("no data", raw(data=None), "data is missing"),
    ("id a number", raw(id=7), "id is not a string"),
    ("id not a uuid", raw(id="order-7"), "id is not a UUID in canonical form"),
    ("id upper case", raw(id=ID.upper()), "id is not a UUID in canonical form"),
    ("type with 4 tokens", raw(type="flotilla.orders.order.confirmed"), "type is not flotilla"),
    ("type outside flotilla", raw(type="acme.orders.order_confirmed"), "type is not flotilla"),
    ("type with wildcard", raw(type="flotilla.orders.*"), "type is not flotilla"),
    (
        "source of another service",
        raw(source="/flotilla/payments"),
        "source is not /flotilla/orders",
    ),
    ("time without zone", raw(time="2030-01-02T03:04:05"), "time is not an RFC 3339"),
    ("time a date", raw(time="2030-01-02"), "time is not an RFC 3339"),
    ("time a number", raw(time=1_700_000_000), "time is not a string"),
    ("time impossible", raw(time="2030-02-30T03:04:05Z"), "time is not a valid date"),
    ("data a list", raw(data=[1]), "data is not a JSON object"),
    ("data a string", raw(data="x"), "data is not a JSON object"),
    ("data_base64", raw(data=None, data_base64="eA=="), "unknown attribute 'data_base64'"),
    ("misspelt attribute", raw(subjet="ord_1"), "unknown attribute 'subjet'"),
    ("other content type", raw(datacontenttype="text/plain"), "datacontenttype is not"),
    ("subject a number", raw(subject=7), "subject is not a string"),
    ("subject empty", raw(subject=""), "subject is not 1 to 200 printable"),
    ("subject with newline", raw(subject="a\nb"), "subject is not 1 to 200 printable"),
    ("subject too long", raw(subject="s" * 201), "subject is not 1 to 200 printable"),
    ("bad traceparent", raw(traceparent="00-abc-def-01"), "traceparent is not a W3C"),
    ("too large", raw(data={"blob": "x" * MAX_EVENT_BYTES}), f"over {MAX_EVENT_BYTES} bytes"),
    ("deeply nested", b'{"data": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "not JSON"),
]


@pytest.mark.parametrize(
    ("payload", "reason"), [(p, r) for _, p, r in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_payloads_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent) as refused:
        CloudEvent.from_json(payload)
    assert refused.value.reason.startswith(reason), refused.value.reason


def test_the_valid_document_the_malformed_ones_start_from_is_accepted() -> None:
    # Each case above changes one thing of this document; it must be valid itself.
    event = CloudEvent.from_json(raw(), arrived_on="flotilla.orders.order_confirmed")
    assert (event.id, event.subject, event.data["total_minor"]) == (ID, "ord_1", 2_500)


def test_an_event_on_another_subject_than_its_type_is_refused() -> None:
    with pytest.raises(MalformedEvent, match="not the subject it arrived on"):
        CloudEvent.from_json(raw(), arrived_on="flotilla.orders.order_cancelled")


def test_an_event_may_arrive_under_its_type_and_one_routing_token() -> None:
    routed = nats_subject("flotilla.orders.order_confirmed", "shop-1")
    assert routed == "flotilla.orders.order_confirmed.shop-1"
    assert CloudEvent.from_json(raw(), arrived_on=routed).subject == "ord_1"
    for other in (
        "flotilla.orders.order_confirmed.a.b",  # two tokens
        "flotilla.orders.order_confirmedx",
        "flotilla.orders.order_cancelled.shop-1",
    ):
        with pytest.raises(MalformedEvent, match="not the subject it arrived on"):
            CloudEvent.from_json(raw(), arrived_on=other)
    for bad in ("", "a.b", "A", "*", ">"):
        with pytest.raises(ValueError, match="routing token"):
            nats_subject("flotilla.orders.order_confirmed", bad)


def test_writing_refuses_what_reading_would() -> None:
    moment = dt.datetime.now(dt.UTC)
    good: dict[str, Any] = {
        "id": ID, "source": "/flotilla/orders", "type": "flotilla.orders.x", "time": moment, "data": {},
    }  # fmt: skip
    CloudEvent(**good)
    for bad in (
        {"id": "x"},
        {"type": "orders.x"},
        {"source": "/flotilla/payments"},
        {"time": moment.replace(tzinfo=None)},
        {"subject": ""},
        {"traceparent": "nope"},
    ):
        with pytest.raises(ValueError, match="not a valid event"):
            CloudEvent(**(good | bad))
    too_big = CloudEvent.new("orders", "x", {"blob": "x" * MAX_EVENT_BYTES})
    with pytest.raises(ValueError, match="bytes, over"):
        too_big.to_json()
    with pytest.raises(ValueError, match="Out of range float values"):
        CloudEvent.new("orders", "x", {"amount": float("nan")}).to_json()
