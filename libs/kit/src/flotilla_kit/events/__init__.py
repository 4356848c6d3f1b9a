"""Events between services: CloudEvents 1.0 JSON on NATS JetStream, written to a
transactional outbox, published by a relay, applied once through an inbox.

A producer adds `CloudEvent.new(...)` to its outbox (`Outbox.add`) in the transaction of
the change; `OutboxRelay` (its own process, `python -m flotilla_<service> relay`)
publishes it to the stream FLOTILLA_EVENTS under the subject that is its type (or its
type and a routing token, so a consumer can take only the part it acts on). A
`Consumer` applies each event in one transaction with its inbox row, retries a failing
handler with backoff, and dead-letters what cannot be applied to FLOTILLA_DLQ, where an
operator lists them (`list_dead_letters`) and puts one back (`requeue_dead_letter`).
"""

from flotilla_kit.events._backlog import count_backlog, watch_backlog
from flotilla_kit.events._broker import (
    BROKER_TROUBLE,
    DLQ_STREAM,
    DLQ_SUBJECT_PREFIX,
    DUPLICATE_WINDOW_S,
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    connect,
    dlq_subject,
    ensure_streams,
)
from flotilla_kit.events._cloudevent import (
    MAX_EVENT_BYTES,
    CloudEvent,
    MalformedEvent,
    nats_subject,
)
from flotilla_kit.events._consumer import Consumer, Handler, Verdict, verdict
from flotilla_kit.events._dead_letters import (
    DEAD_REASON,
    DELIVERIES,
    ORIGINAL_SUBJECT,
    DeadLetter,
    DeadLetterError,
    DeadLetterNotFound,
    DeadLetterNotRequeueable,
    Requeued,
    list_dead_letters,
    read_dead_letters,
    requeue_dead_letter,
)
from flotilla_kit.events._metrics import EventMetrics, Outcome
from flotilla_kit.events._outbox import Outbox
from flotilla_kit.events._relay import OutboxRelay, run_relay
from flotilla_kit.events._tables import inbox_table, outbox_table

__all__ = [
    "BROKER_TROUBLE",
    "DEAD_REASON",
    "DELIVERIES",
    "DLQ_STREAM",
    "DLQ_SUBJECT_PREFIX",
    "DUPLICATE_WINDOW_S",
    "EVENTS_STREAM",
    "EVENTS_SUBJECTS",
    "MAX_EVENT_BYTES",
    "ORIGINAL_SUBJECT",
    "CloudEvent",
    "Consumer",
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterNotFound",
    "DeadLetterNotRequeueable",
    "EventMetrics",
    "Handler",
    "MalformedEvent",
    "Outbox",
    "OutboxRelay",
    "Outcome",
    "Requeued",
    "Verdict",
    "connect",
    "count_backlog",
    "dlq_subject",
    "ensure_streams",
    "inbox_table",
    "list_dead_letters",
    "nats_subject",
    "outbox_table",
    "read_dead_letters",
    "requeue_dead_letter",
    "run_relay",
    "verdict",
    "watch_backlog",
]
