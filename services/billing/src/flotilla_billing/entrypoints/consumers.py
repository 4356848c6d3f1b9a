"""The order events' consumer: `order_confirmed` -> an invoice, `order_refunded` -> a
credit note of that order's invoice. One durable consumer, `billing-orders`, in every
instance (JetStream shares its messages among them).

Each event is applied in one transaction with its inbox row (`flotilla_kit.events`), and
the document, its number and its `invoice_issued` event are written in that same
transaction: a redelivery changes nothing, a crash before the commit leaves nothing.

Three outcomes of a failure:
- the event is not a CloudEvent: the kit's consumer dead-letters it at once;
- its data breaks the contract (the pydantic payload does not validate), or a refund
  contradicts its invoice: the handler raises the kit's `MalformedEvent`, which the
  kit's consumer dead-letters at once, with the reason;
- a refund whose invoice is not there yet: the handler fails, the kit retries with
  backoff (the `order_confirmed` before it is usually being applied meanwhile).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

from pydantic import ValidationError

from flotilla_billing.adapters.document_repository import SqlDocuments
from flotilla_billing.adapters.events import SqlEventLog
from flotilla_billing.adapters.tables import inbox
from flotilla_billing.domain import DocumentKind, VatRates
from flotilla_billing.entrypoints.payloads import (
    OrderConfirmedPayload,
    OrderRefundedPayload,
    refusal_of,
)
from flotilla_billing.service_layer import use_cases
from flotilla_billing.service_layer.errors import EventRefused
from flotilla_kit.db import Database, Transaction
from flotilla_kit.events import (
    BROKER_TROUBLE,
    CloudEvent,
    Consumer,
    EventMetrics,
    MalformedEvent,
)
from flotilla_kit.logs import get_logger

__all__ = [
    "CONFIRMED",
    "CONSUMER",
    "REFUNDED",
    "OrderEvents",
    "orders_consumer",
    "run_consumer",
]

CONSUMER = "billing-orders"
CONFIRMED = "flotilla.orders.order_confirmed"
REFUNDED = "flotilla.orders.order_refunded"
# A refund can wait for its invoice this long: 0.5 s doubling to 30 s, ten deliveries
# (about two minutes) before it is dead-lettered for an operator.
MAX_DELIVER = 10
_RESTART_S = 1.0

_log = get_logger("flotilla.billing.consumers")


class OrderEvents:
    """The handler: applies one orders event in the consumer's transaction."""

    def __init__(
        self,
        *,
        rates: VatRates,
        clock: Callable[[], dt.datetime],
        issued: Callable[[DocumentKind], None] = lambda kind: None,
    ) -> None:
        """`issued`: told the kind of each document written (a metric)."""
        self.rates = rates
        self.clock = clock
        self.issued = issued

    async def __call__(self, event: CloudEvent, transaction: Transaction) -> None:
        documents, events = SqlDocuments(transaction), SqlEventLog(transaction)
        try:
            if event.type == CONFIRMED:
                document = await use_cases.issue_invoice(
                    documents=documents, events=events, rates=self.rates, now=self.clock(),
                    order=OrderConfirmedPayload.model_validate(event.data).domain(),
                )  # fmt: skip
            elif event.type == REFUNDED:
                document = await use_cases.issue_credit_note(
                    documents=documents, events=events, now=self.clock(),
                    refund=OrderRefundedPayload.model_validate(event.data).domain(),
                )  # fmt: skip
            else:  # not subscribed; a broker misconfigured must not make up documents
                raise EventRefused(f"billing does not handle {event.type}")
        except ValidationError as exc:
            reason = refusal_of(exc)
            _log.error("an orders event breaks its contract", event_id=event.id, error=reason)
            raise MalformedEvent(f"data: {reason}") from None
        except EventRefused as exc:
            _log.error("an orders event cannot be applied", event_id=event.id, error=exc.reason)
            raise MalformedEvent(exc.reason) from None
        if document is not None:
            self.issued(document.kind)


def orders_consumer(
    database: Database,
    *,
    nats_url: str,
    handler: OrderEvents,
    metrics: EventMetrics,
    retry_initial_s: float = 0.5,
    max_deliver: int = MAX_DELIVER,
) -> Consumer:
    return Consumer(
        database=database, inbox=inbox, nats_url=nats_url, name=CONSUMER,
        subjects=[CONFIRMED, REFUNDED], handler=handler, metrics=metrics,
        retry_initial_s=retry_initial_s, max_deliver=max_deliver,
    )  # fmt: skip


async def run_consumer(consumer: Consumer) -> None:
    """Run until cancelled; a broker that is not there yet (or went away while
    subscribing) is waited for, so the HTTP API serves meanwhile."""
    while True:
        try:
            await consumer.run()
        except BROKER_TROUBLE as exc:
            _log.warning("consumer waiting for the broker", consumer=consumer.name, error=repr(exc))
            await asyncio.sleep(_RESTART_S)
