"""CloudEvents 1.0 in JSON (structured mode), the envelope of every Flotilla event.

Reading is strict: whatever is not a valid event of ours raises `MalformedEvent` with a
short reason, and the consumer dead-letters it at once instead of retrying something that
can never succeed. Writing refuses what reading would refuse, so an event that could not
be consumed never reaches an outbox.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Self

from flotilla_kit.context import current_context, parse_traceparent
from flotilla_kit.text import refusal_within

__all__ = ["MAX_EVENT_BYTES", "CloudEvent", "MalformedEvent", "nats_subject"]

# Events say what happened and carry the state a consumer needs, never documents: an
# order of a hundred lines is about 10 KiB. The bound keeps one producer's bug from
# filling the stream (and stays far below NATS's 1 MiB message limit).
MAX_EVENT_BYTES = 64 * 1024

_SPECVERSION = "1.0"
_CONTENT_TYPE = "application/json"
_NAME = r"[a-z][a-z0-9_-]{0,62}"
# The type is also the NATS subject: exactly three tokens, none with a wildcard or a dot.
_TYPE = re.compile(rf"^flotilla\.({_NAME})\.({_NAME})$")
_TOKEN = re.compile(rf"^{_NAME}$")
_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# RFC 3339 with a zone; Python keeps microseconds, so longer fractions are cut to six.
_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)
_MAX_SUBJECT = 200
_REQUIRED = ("specversion", "id", "source", "type", "time", "data")
_ATTRIBUTES = frozenset((*_REQUIRED, "datacontenttype", "subject", "traceparent"))


def nats_subject(event_type: str, route: str | None = None) -> str:
    """The NATS subject an event goes out on: its type, or its type and one routing token
    (`flotilla.payments.transfer_committed.orders`), so that a consumer can subscribe to
    the part of an event type it acts on and the broker keeps the rest from it."""
    if route is None:
        return event_type
    if not _TOKEN.match(route):
        raise ValueError(f"a routing token is one name ({_NAME}): {route!r}")
    return f"{event_type}.{route}"


def _arrived_under_its_type(event_type: str, subject: str) -> bool:
    if subject == event_type:
        return True
    prefix, _, route = subject.rpartition(".")
    return prefix == event_type and bool(_TOKEN.match(route))


class MalformedEvent(ValueError):
    """Not a valid Flotilla event; `reason` says why in a few words (it goes into the
    dead letter's headers)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _source_of(service: str) -> str:
    return f"/flotilla/{service}"


def _format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise MalformedEvent("time is not a string")
    match = _TIME.match(value)
    if match is None:
        raise MalformedEvent("time is not an RFC 3339 timestamp with a zone")
    whole, fraction, zone = match.groups()
    text = whole + (f".{fraction[:6].ljust(6, '0')}" if fraction else "") + zone.upper()
    try:
        return dt.datetime.fromisoformat(text).astimezone(dt.UTC)
    except ValueError:
        raise MalformedEvent("time is not a valid date and time") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise MalformedEvent(f"duplicate key {key[:40]!r}")
        found[key] = value
    return found


def _no_constants(name: str) -> Any:
    raise MalformedEvent(f"{name} is not JSON")


def _printable(value: str) -> bool:
    return bool(value) and value.isprintable()


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: str  # uuid4; also the JetStream message id, which JetStream dedupes on
    source: str  # "/flotilla/<service>"
    type: str  # "flotilla.<service>.<event>"; also the NATS subject
    time: dt.datetime  # aware, UTC
    data: dict[str, Any]  # a JSON object
    subject: str | None = None  # the entity it is about (an order id, a product id)
    traceparent: str | None = None  # W3C trace context (distributed tracing extension)

    def __post_init__(self) -> None:
        # Reading refuses these, so writing does too: a bad event fails its producer's
        # transaction instead of landing in a dead-letter queue later.
        problem = self._problem()
        if problem is not None:
            raise ValueError(f"not a valid event: {problem}")

    def _problem(self) -> str | None:
        kind = _TYPE.match(self.type)
        source = _source_of(kind.group(1)) if kind else ""
        # Typed fields, but read from JSON: check what they really hold.
        moment: object = self.time
        data: object = self.data
        failures = (
            (_CANONICAL_UUID.match(self.id) is None, "id is not a UUID in canonical form"),
            (kind is None, "type is not flotilla.<service>.<event>"),
            (kind is not None and self.source != source, f"source is not {source}"),
            (
                not isinstance(moment, dt.datetime) or moment.utcoffset() is None,
                "time is not a timezone-aware datetime",
            ),
            (not isinstance(data, dict), "data is not a JSON object"),
            (
                self.subject is not None
                and not (_printable(self.subject) and len(self.subject) <= _MAX_SUBJECT),
                f"subject is not 1 to {_MAX_SUBJECT} printable characters",
            ),
            (
                self.traceparent is not None and parse_traceparent(self.traceparent) is None,
                "traceparent is not a W3C traceparent",
            ),
        )
        return next((message for failed, message in failures if failed), None)

    @property
    def service(self) -> str:
        """The producing service, from the type."""
        return self.type.split(".")[1]

    @classmethod
    def new(
        cls, service: str, event: str, data: dict[str, Any], *, subject: str | None = None
    ) -> CloudEvent:
        """A new event of `service`, stamped now, carrying the current request's trace
        context when there is one (so a trace follows the work across services)."""
        if not _TOKEN.match(service) or not _TOKEN.match(event):
            raise ValueError(f"service {service!r} and event {event!r} must match {_NAME}")
        context = current_context()
        return cls(
            id=str(uuid.uuid4()),
            source=_source_of(service),
            type=f"flotilla.{service}.{event}",
            time=dt.datetime.now(dt.UTC),
            data=data,
            subject=subject,
            traceparent=context.traceparent() if context is not None else None,
        )

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "specversion": _SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": _format_time(self.time),
            "datacontenttype": _CONTENT_TYPE,
        }
        if self.subject is not None:
            document["subject"] = self.subject
        if self.traceparent is not None:
            document["traceparent"] = self.traceparent
        document["data"] = self.data
        raw = json.dumps(
            document, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
        if len(raw) > MAX_EVENT_BYTES:
            raise ValueError(f"the event is {len(raw)} bytes, over {MAX_EVENT_BYTES}")
        return raw

    @classmethod
    def from_json(cls, raw: bytes, *, arrived_on: str | None = None) -> Self:
        """The event in `raw`, or MalformedEvent. `arrived_on`: the NATS subject it came
        on, which must be its type, or its type and one routing token (a producer cannot
        slip an event of one kind in under another's subject)."""
        document = _decode(raw)
        _check_attributes(document)
        refused = refusal_within(document)
        if refused is not None:
            # A NUL no consumer's database could store, a control character, a bidi
            # override: the same rule as every API's (`flotilla_kit.text`).
            raise MalformedEvent(f"text {refused}")
        if arrived_on is not None and not _arrived_under_its_type(document["type"], arrived_on):
            raise MalformedEvent("type is not the subject it arrived on")
        try:
            return cls(
                id=document["id"],
                source=document["source"],
                type=document["type"],
                time=_parse_time(document["time"]),
                data=document["data"],
                subject=document.get("subject"),
                traceparent=document.get("traceparent"),
            )
        except MalformedEvent:
            raise
        except ValueError as exc:
            raise MalformedEvent(str(exc).removeprefix("not a valid event: ")) from None


def _decode(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_EVENT_BYTES:
        raise MalformedEvent(f"over {MAX_EVENT_BYTES} bytes")
    try:
        document = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constants
        )
    except MalformedEvent:
        raise
    except UnicodeDecodeError:
        raise MalformedEvent("not UTF-8") from None
    except (ValueError, RecursionError):
        raise MalformedEvent("not JSON") from None
    if not isinstance(document, dict):
        raise MalformedEvent("not a JSON object")
    return document


def _check_attributes(document: dict[str, Any]) -> None:
    unknown = sorted(set(document) - _ATTRIBUTES)
    if unknown:
        # Our events have no extension attributes; a misspelt one ("subjet") would
        # otherwise be dropped without a word.
        raise MalformedEvent(f"unknown attribute {unknown[0][:40]!r}")
    missing = [name for name in _REQUIRED if name not in document]
    if missing:
        raise MalformedEvent(f"{missing[0]} is missing")
    if document["specversion"] != _SPECVERSION:
        raise MalformedEvent("specversion is not 1.0")
    if document.get("datacontenttype", _CONTENT_TYPE) != _CONTENT_TYPE:
        raise MalformedEvent(f"datacontenttype is not {_CONTENT_TYPE}")
    for name in ("id", "source", "type", "subject", "traceparent"):
        if name in document and not isinstance(document[name], str):
            raise MalformedEvent(f"{name} is not a string")
