"""Issuing and reading documents, against in-memory ports."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from flotilla_billing.domain import ConfirmedOrder, OrderLine, RefundedOrder, VatRates
from flotilla_billing.service_layer import use_cases
from flotilla_billing.service_layer.errors import (
    DocumentNotFound,
    EventRefused,
    InvalidCursor,
    InvoiceNotIssuedYet,
    NotAllowed,
)
from flotilla_kit.testing import principal
from services.billing.tests.fakes import FakeUnitOfWorkFactory

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
RATES = VatRates(default_bp=2000)
LINES = (OrderLine("apple", 2, 150),)


def order(order_id: str = "o-1", customer: str = "alice") -> ConfirmedOrder:
    return ConfirmedOrder(order_id, customer, "EUR", 300, LINES, "t-pay")


def refund(order_id: str = "o-1", total: int = 300) -> RefundedOrder:
    return RefundedOrder(order_id, "alice", "EUR", total, LINES, "t-refund")


async def test_an_order_gets_one_invoice_and_one_event() -> None:
    uow = FakeUnitOfWorkFactory()
    first = await use_cases.issue_invoice(
        documents=uow.documents, events=uow.events, order=order(), rates=RATES, now=NOW
    )
    again = await use_cases.issue_invoice(
        documents=uow.documents, events=uow.events, order=order(), rates=RATES, now=NOW
    )
    assert first is not None
    assert first.number == "2026-000001"
    assert again is None  # a second event about the same order changes nothing
    [(name, subject, data)] = uow.events.added
    assert (name, subject, data["number"], data["kind"]) == (
        "invoice_issued", "o-1", "2026-000001", "invoice",
    )  # fmt: skip
    assert (data["net_minor"], data["vat_minor"], data["total_minor"]) == (250, 50, 300)


async def test_invoices_and_credit_notes_share_one_sequence_per_year() -> None:
    uow = FakeUnitOfWorkFactory()
    docs, events = uow.documents, uow.events
    await use_cases.issue_invoice(
        documents=docs, events=events, order=order("o-1"), rates=RATES, now=NOW
    )
    note = await use_cases.issue_credit_note(
        documents=docs, events=events, refund=refund("o-1"), now=NOW
    )
    nxt = await use_cases.issue_invoice(
        documents=docs, events=events, order=order("o-2"), rates=RATES, now=NOW
    )
    later = await use_cases.issue_invoice(
        documents=docs, events=events, order=order("o-3"), rates=RATES, now=NOW.replace(year=2027)
    )
    assert note is not None
    assert note.number == "2026-000002"
    assert note.credits_number == "2026-000001"
    assert nxt is not None
    assert nxt.number == "2026-000003"
    assert later is not None
    assert later.number == "2027-000001"
    assert (
        await use_cases.issue_credit_note(
            documents=docs, events=events, refund=refund("o-1"), now=NOW
        )
        is None
    )


async def test_a_refund_before_its_invoice_is_to_be_retried() -> None:
    uow = FakeUnitOfWorkFactory()
    with pytest.raises(InvoiceNotIssuedYet):
        await use_cases.issue_credit_note(
            documents=uow.documents, events=uow.events, refund=refund(), now=NOW
        )
    assert uow.events.added == []


async def test_a_refund_that_contradicts_the_invoice_is_refused_for_good() -> None:
    uow = FakeUnitOfWorkFactory()
    await use_cases.issue_invoice(
        documents=uow.documents, events=uow.events, order=order(), rates=RATES, now=NOW
    )
    with pytest.raises(EventRefused, match="total"):
        await use_cases.issue_credit_note(
            documents=uow.documents, events=uow.events, refund=refund(total=301), now=NOW
        )


async def test_reading_own_documents_newest_first_in_pages() -> None:
    uow = FakeUnitOfWorkFactory()
    for n in range(5):
        await use_cases.issue_invoice(
            documents=uow.documents, events=uow.events, order=order(f"o-{n}"), rates=RATES, now=NOW
        )
    await use_cases.issue_invoice(
        documents=uow.documents, events=uow.events, order=order("b-1", "bob"), rates=RATES, now=NOW
    )
    alice = principal("alice", "customer")
    page = await use_cases.list_documents(uow, principal=alice, limit=2)
    assert [d.number for d in page.items] == ["2026-000005", "2026-000004"]
    assert page.next_after == "2026-000004"
    page = await use_cases.list_documents(uow, principal=alice, limit=2, after=page.next_after)
    assert [d.number for d in page.items] == ["2026-000003", "2026-000002"]
    page = await use_cases.list_documents(uow, principal=alice, limit=2, after=page.next_after)
    assert [d.number for d in page.items] == ["2026-000001"]
    assert page.next_after is None
    with pytest.raises(InvalidCursor):
        await use_cases.list_documents(uow, principal=alice, limit=2, after="nope")
    with pytest.raises(NotAllowed):
        await use_cases.list_documents(uow, principal=alice, limit=2, customer_id="bob")
    staff = await use_cases.list_documents(
        uow, principal=principal("sam", "support"), limit=10, customer_id="bob"
    )
    assert [d.order_id for d in staff.items] == ["b-1"]


async def test_someone_elses_document_is_not_found_like_a_missing_one() -> None:
    uow = FakeUnitOfWorkFactory()
    invoice = await use_cases.issue_invoice(
        documents=uow.documents, events=uow.events, order=order(), rates=RATES, now=NOW
    )
    assert invoice is not None
    mine = await use_cases.get_document(
        uow, principal=principal("alice", "customer"), document_id=invoice.id
    )
    assert mine == invoice
    for who, document_id in (("bob", invoice.id), ("alice", uuid.uuid4())):
        with pytest.raises(DocumentNotFound):
            await use_cases.get_document(
                uow, principal=principal(who, "customer"), document_id=document_id
            )
    staff = await use_cases.get_document(
        uow, principal=principal("ada", "admin"), document_id=invoice.id
    )
    assert staff == invoice
