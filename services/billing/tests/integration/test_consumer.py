"""The order events' consumer over a real NATS JetStream and a real database (SQLite and
PostgreSQL): an invoice once per confirmed order (copies and repeats change nothing), a
credit note per refund (retried while its invoice is not there yet), and what can never
be applied dead-lettered at once with its reason. The outbox holds one `invoice_issued`
per document, and the relay publishes them."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from flotilla_billing.adapters.tables import documents, inbox, outbox
from flotilla_billing.domain import VatRates
from flotilla_billing.entrypoints.consumers import CONSUMER, OrderEvents, orders_consumer
from flotilla_kit.db import Database, Query
from flotilla_kit.events import OutboxRelay, Outcome, connect, ensure_streams
from services.billing.tests.integration.events import (
    WatchedMetrics,
    dead_letters,
    order_event,
    publish,
    publish_event,
    running,
)

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
_DOCUMENTS = Query(
    select(documents.c.kind, documents.c.number, documents.c.order_id, documents.c.total_minor,
           documents.c.vat_minor, documents.c.credits_number)
    .order_by(documents.c.year, documents.c.seq)
)  # fmt: skip
_OUTBOX = Query(select(outbox.c.subject, outbox.c.payload).order_by(outbox.c.seq))
_INBOX = Query(select(func.count().label("n")).select_from(inbox))


def confirmed(order_id: str | None = None, **change: Any) -> dict[str, Any]:
    return {
        "order_id": order_id or str(uuid.uuid4()), "customer_id": "alice",
        "lines": [{"product_id": "apple", "quantity": 2, "unit_price_minor": 150},
                  {"product_id": "book", "quantity": 1, "unit_price_minor": 1055}],
        "total_minor": 1355, "currency": "EUR", "payment_transfer_id": "t-pay", **change,
    }  # fmt: skip


def refunded(order: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in order.items() if k != "payment_transfer_id"}
    return {**data, "refund_transfer_id": "t-refund"}


@pytest.fixture
def metrics() -> WatchedMetrics:
    return WatchedMetrics()


@pytest.fixture
async def consuming(
    database: Database, nats_url: str, metrics: WatchedMetrics
) -> AsyncIterator[None]:
    handler = OrderEvents(
        rates=VatRates(default_bp=2000, overrides={"book": 550}), clock=lambda: NOW
    )
    consumer = orders_consumer(
        database, nats_url=nats_url, handler=handler, metrics=metrics, retry_initial_s=0.05
    )
    async with running(consumer):
        yield


async def stored(database: Database) -> list[Any]:
    async with database.transaction(write=False) as tx:
        return list(await tx.all(_DOCUMENTS))


async def test_a_confirmed_order_gets_one_invoice_whatever_the_copies(
    database: Database, nats_url: str, metrics: WatchedMetrics, consuming: None
) -> None:
    order = confirmed()
    event = order_event("order_confirmed", order)
    await publish_event(nats_url, event)
    await metrics.until(lambda m: m.count(Outcome.APPLIED) == 1)
    await publish_event(nats_url, event)  # the same event again (a redelivery)
    await metrics.until(lambda m: m.count(Outcome.DUPLICATE) == 1)
    # Another event about the same order (a producer's bug): applied, but no second invoice.
    await publish_event(nats_url, order_event("order_confirmed", order))
    await metrics.until(lambda m: m.count(Outcome.APPLIED) == 2)
    [invoice] = await stored(database)
    assert (invoice.kind, invoice.number, invoice.order_id) == (
        "invoice", "2026-000001", order["order_id"],
    )  # fmt: skip
    assert (invoice.total_minor, invoice.vat_minor) == (1355, 105)  # 50 at 20 %, 55 at 5.5 %
    async with database.transaction(write=False) as tx:
        [(subject, payload)] = await tx.all(_OUTBOX)
        assert await tx.scalar(_INBOX) == 2
    issued = json.loads(payload)
    assert subject == "flotilla.billing.invoice_issued"
    assert issued["subject"] == order["order_id"]
    assert issued["data"]["number"] == "2026-000001"
    assert issued["data"]["kind"] == "invoice"
    assert (issued["data"]["net_minor"], issued["data"]["total_minor"]) == (1250, 1355)
    assert metrics.count(Outcome.RETRIED) == 0
    assert await dead_letters(nats_url) == []
    # ... and the relay publishes it.
    relay = OutboxRelay(database=database, outbox=outbox, nats_url=nats_url, service="billing")
    try:
        assert await relay.publish_pending() == 1
    finally:
        await relay.close()
    client = await connect(nats_url, name="test-reader", persistent=False)
    try:
        js = client.jetstream()
        await ensure_streams(js)
        message = await js.get_last_msg("FLOTILLA_EVENTS", "flotilla.billing.invoice_issued")
        assert json.loads(message.data or b"{}")["id"] == issued["id"]
    finally:
        await client.close()


async def test_a_refund_gets_a_credit_note_of_its_invoice(
    database: Database, nats_url: str, metrics: WatchedMetrics, consuming: None
) -> None:
    order = confirmed()
    await publish_event(nats_url, order_event("order_confirmed", order))
    await publish_event(nats_url, order_event("order_refunded", refunded(order)))
    await metrics.until(lambda m: m.count(Outcome.APPLIED) == 2)
    invoice, note = await stored(database)
    assert (note.kind, note.number, note.credits_number) == (
        "credit_note", "2026-000002", invoice.number,
    )  # fmt: skip
    assert (note.total_minor, note.vat_minor) == (-1355, -105)
    async with database.transaction(write=False) as tx:
        kinds = [json.loads(p)["data"]["kind"] for _, p in await tx.all(_OUTBOX)]
    assert kinds == ["invoice", "credit_note"]


async def test_a_refund_before_its_invoice_is_retried_until_the_invoice_is_there(
    database: Database, nats_url: str, metrics: WatchedMetrics, consuming: None
) -> None:
    order = confirmed()
    await publish_event(nats_url, order_event("order_refunded", refunded(order)))
    await metrics.until(lambda m: m.count(Outcome.RETRIED) >= 1)
    assert await stored(database) == []  # the failed attempt left nothing, no number taken
    await publish_event(nats_url, order_event("order_confirmed", order))
    await metrics.until(lambda m: m.count(Outcome.APPLIED) == 2)
    invoice, note = await stored(database)
    assert (invoice.number, note.number, note.credits_number) == (
        "2026-000001", "2026-000002", "2026-000001",
    )  # fmt: skip
    assert await dead_letters(nats_url) == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed: not JSON"),
        (
            order_event("order_confirmed", confirmed(total_minor=1356)).to_json(),
            "refused: data: Value error, the lines add up to 1355, not to total_minor 1356",
        ),
        (
            order_event("order_confirmed", confirmed(currency=None)).to_json(),
            "refused: data: currency: Input should be a valid string",
        ),
        (
            order_event("order_refunded", confirmed()).to_json(),
            "refused: data: refund_transfer_id: Field required",
        ),
    ],
    ids=["not-a-cloudevent", "lines-not-the-total", "no-currency", "refund-without-transfer"],
)
async def test_what_can_never_be_applied_is_dead_lettered_at_once_with_its_reason(
    database: Database,
    nats_url: str,
    metrics: WatchedMetrics,
    consuming: None,
    payload: bytes,
    reason: str,
) -> None:
    subject = (
        "flotilla.orders.order_refunded"
        if b"order_refunded" in payload
        else ("flotilla.orders.order_confirmed")
    )
    await publish(nats_url, subject, payload)
    await metrics.until(lambda m: m.count(Outcome.DEAD_LETTERED) == 1)
    assert metrics.count(Outcome.RETRIED) == 0  # at once: retrying cannot make it valid
    [letter] = await dead_letters(nats_url)
    assert (letter.consumer, letter.reason, letter.deliveries) == (CONSUMER, reason, 1)
    assert letter.payload == payload
    assert await stored(database) == []
    # Nothing was taken from the numbers: the next invoice is still the first.
    await publish_event(nats_url, order_event("order_confirmed", confirmed()))
    await metrics.until(lambda m: m.count(Outcome.APPLIED) == 1)
    [invoice] = await stored(database)
    assert invoice.number == "2026-000001"


async def test_a_refund_that_contradicts_its_invoice_is_dead_lettered_at_once(
    database: Database, nats_url: str, metrics: WatchedMetrics, consuming: None
) -> None:
    order = confirmed()
    await publish_event(nats_url, order_event("order_confirmed", order))
    await publish_event(
        nats_url, order_event("order_refunded", {**refunded(order), "customer_id": "bob"})
    )
    await metrics.until(lambda m: m.count(Outcome.DEAD_LETTERED) == 1)
    [letter] = await dead_letters(nats_url)
    assert "differs from invoice 2026-000001 in: customer" in letter.reason
    assert letter.deliveries == 1
    assert [d.kind for d in await stored(database)] == ["invoice"]
