"""Events between services: CloudEvents 1.0 JSON on NATS JetStream, written to a
transactional outbox, published by a relay, applied once through an inbox.

A producer adds `CloudEvent.new(...)` to its outbox (`Outbox.add`) in the transaction of
the change.
"""

from flotilla_kit.events._cloudevent import MAX_EVENT_BYTES, CloudEvent, MalformedEvent
from flotilla_kit.events._outbox import Outbox
from flotilla_kit.events._tables import inbox_table, outbox_table

__all__ = [
    "MAX_EVENT_BYTES",
    "CloudEvent",
    "MalformedEvent",
    "Outbox",
    "inbox_table",
    "outbox_table",
]
