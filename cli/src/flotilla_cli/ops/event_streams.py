"""Reading the event streams for an operator: follow FLOTILLA_EVENTS (or the DLQ), one
line each, and find the running system's NATS.

`flotilla events tail` reads with an ordered consumer (ephemeral, nothing left on the
broker, no acks), so watching never takes events away from the services' consumers.
Listing and requeueing dead letters is the kit's (`flotilla_kit.events`), which the web
console uses too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.js import api

from flotilla_kit.events import (
    DLQ_STREAM,
    DLQ_SUBJECT_PREFIX,
    EVENTS_STREAM,
    CloudEvent,
    MalformedEvent,
    connect,
    ensure_streams,
)

__all__ = [
    "DEFAULT_NATS_URL",
    "Seen",
    "follow",
    "nats_url_of",
    "summary",
]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
_SUMMARY_WIDTH = 80


def nats_url_of(state_file: Path) -> str:
    """Where the running system's NATS listens: `nats_url` in its state file (written by
    the launcher), else the default local address."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return DEFAULT_NATS_URL
    url = state.get("nats_url") if isinstance(state, dict) else None
    return url if isinstance(url, str) and url else DEFAULT_NATS_URL


def summary(data: dict[str, Any], width: int = _SUMMARY_WIDTH) -> str:
    """`key=value` pairs of an event's data on one line, cut at `width`."""
    text = " ".join(
        f"{key}={json.dumps(value, ensure_ascii=False, separators=(',', ':'))}"
        for key, value in data.items()
    )
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True, slots=True)
class Seen:
    """One message of a stream: the event, or why it is not one."""

    sequence: int
    subject: str
    payload: bytes
    event: CloudEvent | None
    problem: str | None

    def line(self) -> str:
        if self.event is None:
            return f"#{self.sequence} {self.subject} (not an event: {self.problem})"
        e = self.event
        moment = e.time.astimezone(dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        return f"{moment} {e.type} {e.subject or '-'} {e.id} {summary(e.data)}"


def _seen(sequence: int, subject: str, payload: bytes) -> Seen:
    try:
        # A dead letter's subject is the DLQ's, not its type: check the subject only on
        # the events stream.
        on = None if subject.startswith(DLQ_SUBJECT_PREFIX) else subject
        return Seen(sequence, subject, payload, CloudEvent.from_json(payload, arrived_on=on), None)
    except MalformedEvent as exc:
        return Seen(sequence, subject, payload, None, exc.reason)


async def follow(
    url: str,
    *,
    subject: str,
    from_start: bool,
    limit: int | None,
    on_ready: Callable[[], None],
    on_message: Callable[[Seen], None],
) -> int:
    """Print (through `on_message`) what arrives on `subject`, from the start of the
    stream or from now, until `limit` messages (or forever). Returns how many."""
    client = await connect(url, name="flotilla-events-tail", persistent=False)
    try:
        js = client.jetstream()
        await ensure_streams(js)
        stream = DLQ_STREAM if subject.startswith(DLQ_SUBJECT_PREFIX) else EVENTS_STREAM
        subscription = await js.subscribe(
            subject,
            stream=stream,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.ALL if from_start else api.DeliverPolicy.NEW,
        )
        on_ready()
        count = 0
        while limit is None or count < limit:
            try:
                message = await subscription.next_msg(timeout=3600)
            except TimeoutError:
                continue
            on_message(_seen(message.metadata.sequence.stream, message.subject, message.data))
            count += 1
        return count
    finally:
        await client.close()


def run(coroutine: Any) -> Any:
    """asyncio.run, with Ctrl-C ending a follow quietly."""
    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        return None
