"""The order history's event consumers, one of each in every instance (JetStream shares
the messages among the instances of one durable consumer):

- `orders-history-orders` on `flotilla.orders.>`: how each order ended;
- `orders-history-payments` on `flotilla.payments.transfer_committed.orders`: which of
  the transfers this service made (the orders' payments and refunds) committed. Payments
  routes each committed transfer by who asked for it, so the broker keeps the bank's
  other transfers from us instead of every instance receiving and storing them.

Each event is applied in one transaction with its inbox row (`flotilla_kit.events`), so a
redelivery changes nothing; the handlers only store facts, so the order of arrival does
not matter either.
"""

from __future__ import annotations

import asyncio

from flotilla_kit.db import Database, Transaction
from flotilla_kit.events import BROKER_TROUBLE, CloudEvent, Consumer, EventMetrics
from flotilla_kit.logs import get_logger
from flotilla_orders.adapters.history_repository import SqlHistory
from flotilla_orders.adapters.tables import inbox
from flotilla_orders.domain import InvalidEventData
from flotilla_orders.service_layer import history

__all__ = [
    "ORDERS_CONSUMER",
    "PAYMENTS_CONSUMER",
    "PAYMENTS_SUBJECT",
    "history_consumers",
    "on_order_event",
    "on_transfer_committed",
    "run_consumer",
]

ORDERS_CONSUMER = "orders-history-orders"
PAYMENTS_CONSUMER = "orders-history-payments"
# `transfer_committed` under the routing token of the transfers this service asked for.
PAYMENTS_SUBJECT = "flotilla.payments.transfer_committed.orders"
_RESTART_S = 1.0

_log = get_logger("flotilla.orders.consumers")


async def on_order_event(event: CloudEvent, transaction: Transaction) -> None:
    try:
        await history.record_order_event(
            SqlHistory(transaction), event_id=event.id, event_type=event.type,
            data=event.data, at=event.time,
        )  # fmt: skip
    except InvalidEventData as exc:
        _log.error("an orders event breaks its contract", event_id=event.id, error=str(exc))
        raise


async def on_transfer_committed(event: CloudEvent, transaction: Transaction) -> None:
    try:
        await history.record_transfer_committed(
            SqlHistory(transaction), event_id=event.id, data=event.data, at=event.time
        )
    except InvalidEventData as exc:
        _log.error("a payments event breaks its contract", event_id=event.id, error=str(exc))
        raise


def history_consumers(
    database: Database, *, nats_url: str, metrics: EventMetrics
) -> list[Consumer]:
    return [
        Consumer(
            database=database, inbox=inbox, nats_url=nats_url, name=ORDERS_CONSUMER,
            subjects=["flotilla.orders.>"], handler=on_order_event, metrics=metrics,
        ),
        Consumer(
            database=database, inbox=inbox, nats_url=nats_url, name=PAYMENTS_CONSUMER,
            subjects=[PAYMENTS_SUBJECT], handler=on_transfer_committed,
            metrics=metrics,
        ),
    ]  # fmt: skip


async def run_consumer(consumer: Consumer) -> None:
    """Run until cancelled; a broker that is not there yet (or went away while
    subscribing) is waited for, so the HTTP API serves meanwhile."""
    while True:
        try:
            await consumer.run()
        except BROKER_TROUBLE as exc:
            _log.warning(
                "history consumer waiting for the broker", consumer=consumer.name, error=repr(exc)
            )
            await asyncio.sleep(_RESTART_S)
