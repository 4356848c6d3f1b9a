"""Dead letters: events a consumer gave up on, kept in FLOTILLA_DLQ for an operator.

Each is the original payload, unchanged (so it can be inspected or published again),
with headers saying why, where it came from and how often it was tried.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from flotilla_kit.events._broker import DLQ_STREAM, DLQ_SUBJECT_PREFIX

__all__ = [
    "DEAD_REASON",
    "DELIVERIES",
    "ORIGINAL_SUBJECT",
    "DeadLetter",
    "read_dead_letters",
]

DEAD_REASON = "Flotilla-Dead-Reason"
ORIGINAL_SUBJECT = "Flotilla-Original-Subject"
DELIVERIES = "Flotilla-Deliveries"


def _peek(payload: bytes) -> tuple[str | None, str | None]:
    """The id and type of an event that may be malformed (that may be why it is here)."""
    try:
        document = json.loads(payload)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    ident, kind = document.get("id"), document.get("type")
    return (
        ident if isinstance(ident, str) else None,
        kind if isinstance(kind, str) else None,
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    sequence: int  # in FLOTILLA_DLQ
    consumer: str
    reason: str
    original_subject: str
    deliveries: int
    dead_at: dt.datetime | None
    event_id: str | None  # None when the payload is not readable as an event
    event_type: str | None
    payload: bytes

    @classmethod
    def of(
        cls,
        *,
        sequence: int,
        subject: str,
        headers: dict[str, str] | None,
        payload: bytes,
        dead_at: dt.datetime | None,
    ) -> DeadLetter:
        found = headers or {}
        event_id, event_type = _peek(payload)
        try:
            deliveries = int(found.get(DELIVERIES, "0"))
        except ValueError:
            deliveries = 0
        return cls(
            sequence=sequence,
            consumer=subject.removeprefix(DLQ_SUBJECT_PREFIX),
            reason=found.get(DEAD_REASON, ""),
            original_subject=found.get(ORIGINAL_SUBJECT, ""),
            deliveries=deliveries,
            dead_at=dead_at,
            event_id=event_id,
            event_type=event_type,
            payload=payload,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "consumer": self.consumer,
            "reason": self.reason,
            "original_subject": self.original_subject,
            "deliveries": self.deliveries,
            "dead_at": self.dead_at.isoformat() if self.dead_at else None,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "payload": self.payload.decode(errors="replace"),
        }


async def read_dead_letters(js: JetStreamContext, *, limit: int = 1000) -> list[DeadLetter]:
    """The newest `limit` dead letters, oldest first (none if the stream does not exist)."""
    try:
        state = (await js.stream_info(DLQ_STREAM)).state
    except NotFoundError:
        return []
    found: list[DeadLetter] = []
    sequence = state.last_seq
    while sequence >= max(state.first_seq, 1) and len(found) < limit:
        try:
            message = await js.get_msg(DLQ_STREAM, sequence)
        except NotFoundError:  # deleted by an operator
            sequence -= 1
            continue
        found.append(
            DeadLetter.of(
                sequence=sequence,
                subject=message.subject or "",
                headers=message.headers,
                payload=message.data or b"",
                dead_at=message.time,
            )
        )
        sequence -= 1
    found.reverse()
    return found
