"""The broker side every producer and consumer shares: the two streams and how to connect.

Streams are created idempotently by whoever starts first (relays, consumers): the same
configuration sent twice is accepted by JetStream, so N processes starting at once agree.
"""

from __future__ import annotations

from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError

from flotilla_kit.db import DatabaseError
from flotilla_kit.logs import get_logger

__all__ = [
    "BROKER_TROUBLE",
    "DLQ_STREAM",
    "DLQ_SUBJECT_PREFIX",
    "DUPLICATE_WINDOW_S",
    "EVENTS_STREAM",
    "EVENTS_SUBJECTS",
    "connect",
    "dlq_subject",
    "ensure_streams",
]

EVENTS_STREAM = "FLOTILLA_EVENTS"
EVENTS_SUBJECTS = ("flotilla.>",)
DLQ_STREAM = "FLOTILLA_DLQ"
DLQ_SUBJECT_PREFIX = "flotilla-dlq."
# A relay that crashed between publishing and marking sends the same event again when it
# restarts; JetStream drops the copy if it arrives within this window (by Nats-Msg-Id).
DUPLICATE_WINDOW_S = 120.0

# What relays and consumers wait out and retry: the broker or the database is unreachable,
# slow, or restarting. Anything else is a bug and ends the process (its supervisor
# restarts it).
BROKER_TROUBLE: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    OSError,  # includes TimeoutError
    DatabaseError,
)

_STREAM_IN_USE = 10058  # "stream name already in use with a different configuration"
_RECONNECT_WAIT_S: Any = 0.25  # nats-py annotates it int; it takes a float

_log = get_logger("flotilla.events.broker")


def dlq_subject(consumer: str) -> str:
    return f"{DLQ_SUBJECT_PREFIX}{consumer}"


def _configs() -> list[api.StreamConfig]:
    return [
        api.StreamConfig(
            name=EVENTS_STREAM,
            subjects=list(EVENTS_SUBJECTS),
            storage=api.StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        api.StreamConfig(
            name=DLQ_STREAM,
            subjects=[f"{DLQ_SUBJECT_PREFIX}>"],
            storage=api.StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
    ]


async def ensure_streams(js: JetStreamContext) -> None:
    """Create FLOTILLA_EVENTS and FLOTILLA_DLQ if they are missing; bring back their
    subjects and duplicate window if someone changed them (limits set by an operator,
    such as max_age, are kept)."""
    for config in _configs():
        try:
            await js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code != _STREAM_IN_USE:
                raise
            assert config.name is not None
            current = (await js.stream_info(config.name)).config
            await js.update_stream(
                current.evolve(subjects=config.subjects, duplicate_window=config.duplicate_window)
            )
            _log.warning("stream configuration restored", stream=config.name)


async def connect(url: str, *, name: str, persistent: bool = True) -> Client:
    """A connection that, when `persistent`, waits for the broker and reconnects forever
    (a relay or consumer outlives broker restarts); otherwise one attempt, for commands
    that should fail fast."""
    client = Client()
    failing = False

    async def on_error(error: Exception) -> None:
        # Called on every failed attempt: say it once per outage, then quietly.
        nonlocal failing
        if failing:
            _log.debug("nats connection error", connection=name, error=repr(error))
        else:
            failing = True
            _log.warning("cannot reach nats; retrying", connection=name, error=repr(error))

    async def on_disconnect() -> None:
        nonlocal failing
        if not client.is_closed:  # closing on purpose is no news
            failing = True
            _log.warning("disconnected from nats; reconnecting", connection=name)

    async def on_reconnect() -> None:
        nonlocal failing
        failing = False
        _log.info("reconnected to nats", connection=name)

    await client.connect(
        url,
        name=name,
        allow_reconnect=persistent,
        # nats-py reads 0 as "no limit"; 1 is one more try after the first.
        max_reconnect_attempts=-1 if persistent else 1,
        reconnect_time_wait=_RECONNECT_WAIT_S,
        connect_timeout=2,
        # A broker that vanished without closing the socket is noticed within ~20 s.
        ping_interval=10,
        max_outstanding_pings=2,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    return client
