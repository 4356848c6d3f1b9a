"""Billing's use cases. Issuing runs inside the transaction of the event that asks for
it (the consumer's, with its inbox row), so the document, its number and its
`invoice_issued` event commit with the inbox row or not at all. Reading opens its own."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from flotilla_billing.domain import (
    INVOICE_ISSUED,
    ConfirmedOrder,
    Document,
    DocumentKind,
    RefundDoesNotMatch,
    RefundedOrder,
    VatRates,
    credit_note_for,
    format_number,
    invoice_for,
    issued_event,
    parse_number,
)
from flotilla_billing.service_layer.errors import (
    DocumentNotFound,
    EventRefused,
    InvalidCursor,
    InvoiceNotIssuedYet,
    NotAllowed,
)
from flotilla_billing.service_layer.ports import (
    BillingUnitOfWork,
    Documents,
    EventLog,
    UnitOfWorkFactory,
)
from flotilla_kit.tokens import Principal

__all__ = [
    "READ_ANY",
    "DocumentPage",
    "get_document",
    "issue_credit_note",
    "issue_invoice",
    "list_documents",
]

READ_ANY = "invoices:read:any"


async def issue_invoice(
    *,
    documents: Documents,
    events: EventLog,
    order: ConfirmedOrder,
    rates: VatRates,
    now: dt.datetime,
) -> Document | None:
    """The order's invoice, numbered now; None if the order has one already (another
    event about the same order: the first one counts)."""
    if await documents.for_order(order.order_id, DocumentKind.INVOICE) is not None:
        return None
    number = format_number(now.year, await documents.next_number(now.year))
    invoice = invoice_for(order, rates=rates, id=uuid.uuid4(), number=number, issued_at=now)
    await documents.add(invoice)
    await events.add(INVOICE_ISSUED, subject=order.order_id, data=issued_event(invoice))
    return invoice


async def issue_credit_note(
    *,
    documents: Documents,
    events: EventLog,
    refund: RefundedOrder,
    now: dt.datetime,
) -> Document | None:
    """The credit note of a refunded order, crediting its invoice; None if it has one
    already. InvoiceNotIssuedYet when the invoice is not there (yet); EventRefused when
    the refund contradicts the invoice."""
    invoice = await documents.for_order(refund.order_id, DocumentKind.INVOICE)
    if invoice is None:
        raise InvoiceNotIssuedYet(f"order {refund.order_id} has no invoice yet")
    if await documents.for_order(refund.order_id, DocumentKind.CREDIT_NOTE) is not None:
        return None
    number = format_number(now.year, await documents.next_number(now.year))
    try:
        note = credit_note_for(invoice, refund, id=uuid.uuid4(), number=number, issued_at=now)
    except RefundDoesNotMatch as exc:
        raise EventRefused(str(exc)) from None
    await documents.add(note)
    await events.add(INVOICE_ISSUED, subject=refund.order_id, data=issued_event(note))
    return note


@dataclass(frozen=True, slots=True)
class DocumentPage:
    items: list[Document]
    next_after: str | None  # pass as `after` for the next page; None on the last one


async def list_documents(
    uow: UnitOfWorkFactory[BillingUnitOfWork],
    *,
    principal: Principal,
    limit: int,
    after: str | None = None,
    customer_id: str | None = None,
) -> DocumentPage:
    """A customer's documents, newest first: the caller's own, or (staff,
    `invoices:read:any`) anyone's."""
    customer = customer_id if customer_id is not None else principal.subject
    if customer != principal.subject and not principal.can(READ_ANY):
        raise NotAllowed(READ_ANY)
    before = None
    if after is not None:
        before = parse_number(after)
        if before is None:
            raise InvalidCursor(f"after={after!r} is not a document number")
    async with uow(write=False) as u:
        found = await u.documents.page_for_customer(customer, limit=limit + 1, before=before)
    items = found[:limit]
    return DocumentPage(items=items, next_after=items[-1].number if len(found) > limit else None)


async def get_document(
    uow: UnitOfWorkFactory[BillingUnitOfWork], *, principal: Principal, document_id: uuid.UUID
) -> Document:
    """One document, to its customer or to staff; anyone else gets DocumentNotFound, as
    for a missing id (so ids cannot be probed)."""
    async with uow(write=False) as u:
        document = await u.documents.get(document_id)
    if document is None or (
        document.customer_id != principal.subject and not principal.can(READ_ANY)
    ):
        raise DocumentNotFound(str(document_id))
    return document
