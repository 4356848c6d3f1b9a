"""Dead letters: events a consumer gave up on, kept in FLOTILLA_DLQ for an operator.

Each is the original payload, unchanged (so it can be inspected or published again),
with headers saying why, where it came from and how often it was tried. An operator lists
them (`list_dead_letters`) and puts one back on its way once the cause is fixed
(`requeue_dead_letter`): `flotilla events dlq` / `requeue`, and the web console.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from flotilla_kit.events._broker import (
    DLQ_STREAM,
    DLQ_SUBJECT_PREFIX,
    EVENTS_STREAM,
    connect,
    ensure_streams,
)
from flotilla_kit.events._cloudevent import CloudEvent, MalformedEvent

__all__ = [
    "DEAD_REASON",
    "DELIVERIES",
    "ORIGINAL_SUBJECT",
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterNotFound",
    "DeadLetterNotRequeueable",
    "Requeued",
    "list_dead_letters",
    "read_dead_letters",
    "requeue_dead_letter",
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


class DeadLetterError(Exception):
    """A dead letter an operator asked for cannot be had or requeued; the message says why."""

    def __init__(self, sequence: int, message: str) -> None:
        super().__init__(message)
        self.sequence = sequence


class DeadLetterNotFound(DeadLetterError):
    """No dead letter has this sequence number (never had, or removed: requeued already)."""

    def __init__(self, sequence: int) -> None:
        super().__init__(sequence, f"no dead letter #{sequence} in {DLQ_STREAM}")


class DeadLetterNotRequeueable(DeadLetterError):
    """The dead letter cannot go back: `reason` says why (it stays in the queue)."""

    def __init__(self, sequence: int, reason: str) -> None:
        super().__init__(sequence, f"dead letter #{sequence} cannot be requeued: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Requeued:
    """A dead letter put back: its event is on `subject` in FLOTILLA_EVENTS again."""

    letter: DeadLetter
    subject: str
    stream_sequence: int  # the event's new place in FLOTILLA_EVENTS
    # An earlier requeue of this letter had published it already (and stopped before it
    # removed the letter), within the duplicate window: JetStream kept one copy.
    duplicate: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.letter.sequence,
            "consumer": self.letter.consumer,
            "event_id": self.letter.event_id,
            "event_type": self.letter.event_type,
            "subject": self.subject,
            "stream_sequence": self.stream_sequence,
            "duplicate": self.duplicate,
        }


@contextlib.asynccontextmanager
async def _jetstream(nats: str | Client, name: str) -> AsyncIterator[JetStreamContext]:
    """A given connection's JetStream, or one of a connection made for the call (one
    attempt, closed after: an operator's command fails fast)."""
    if not isinstance(nats, str):
        yield nats.jetstream()
        return
    client = await connect(nats, name=name, persistent=False)
    try:
        yield client.jetstream()
    finally:
        await client.close()


async def list_dead_letters(nats: str | Client, *, limit: int = 1000) -> list[DeadLetter]:
    """The newest `limit` dead letters, oldest first (none if there is no dead-letter
    stream yet). `nats`: a server URL (connected for this call) or a connection.
    Broker trouble raises one of `BROKER_TROUBLE`."""
    async with _jetstream(nats, "flotilla-dlq-list") as js:
        return await read_dead_letters(js, limit=limit)


def _refusal(letter: DeadLetter) -> str | None:
    """Why the letter cannot be published again, or None."""
    subject = letter.original_subject
    if not subject:
        return f"it does not say where it came from (no {ORIGINAL_SUBJECT} header)"
    if not subject.startswith("flotilla."):
        return f"its original subject {subject!r} is not one of {EVENTS_STREAM}"
    try:
        CloudEvent.from_json(letter.payload, arrived_on=subject)
    except MalformedEvent as exc:
        # Published again, it would be dead-lettered again at once.
        return f"it is not a valid event for {subject} ({exc.reason})"
    return None


def _requeue_message_id(letter: DeadLetter) -> str:
    """The Nats-Msg-Id of a letter's event published again: not the event's id (a copy
    within the duplicate window of the first publication would be dropped), but the same
    for every requeue of this letter, so a requeue repeated after a crash before the
    letter was removed publishes nothing new within the window."""
    return f"{letter.event_id}:requeued:{letter.consumer}:{letter.sequence}"


async def requeue_dead_letter(nats: str | Client, sequence: int) -> Requeued:
    """Put dead letter `sequence` back on its original subject, then remove it from the
    dead-letter queue, in that order: a crash between the two leaves the letter, to be
    requeued again, never a lost event. Every consumer of that subject is sent the event
    again: the one that gave up applies it now, the others find it in their inbox and
    ignore it (a consumer applies an event id once).

    `nats`: a server URL (connected for this call) or a connection. Raises
    `DeadLetterNotFound` (no such letter, e.g. requeued already) or
    `DeadLetterNotRequeueable` (no original subject, or not a valid event: it would only
    come back), and one of `BROKER_TROUBLE` when the broker cannot be reached."""
    async with _jetstream(nats, "flotilla-dlq-requeue") as js:
        letter = await _dead_letter(js, sequence)
        refused = _refusal(letter)
        if refused is not None:
            raise DeadLetterNotRequeueable(sequence, refused)
        await ensure_streams(js)
        ack = await js.publish(
            letter.original_subject,
            letter.payload,
            stream=EVENTS_STREAM,
            headers={"Nats-Msg-Id": _requeue_message_id(letter)},
        )
        # The event is safe on its stream; only now does the letter go.
        await _remove(js, sequence)
        return Requeued(
            letter=letter,
            subject=letter.original_subject,
            stream_sequence=ack.seq,
            duplicate=bool(ack.duplicate),
        )


async def _remove(js: JetStreamContext, sequence: int) -> None:
    try:
        await js.delete_msg(DLQ_STREAM, sequence)
    except APIError:
        # JetStream answers a message already deleted (by a requeue of another operator)
        # with the same error as a failed deletion: it is gone, or the error stands.
        try:
            await js.get_msg(DLQ_STREAM, sequence)
        except NotFoundError:
            return
        raise


async def _dead_letter(js: JetStreamContext, sequence: int) -> DeadLetter:
    if sequence < 1:
        raise DeadLetterNotFound(sequence)
    try:
        message = await js.get_msg(DLQ_STREAM, sequence)
    except NotFoundError:  # no such message, or no dead-letter stream at all
        raise DeadLetterNotFound(sequence) from None
    return DeadLetter.of(
        sequence=sequence,
        subject=message.subject or "",
        headers=message.headers,
        payload=message.data or b"",
        dead_at=message.time,
    )
