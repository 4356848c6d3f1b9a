"""What billing tells the world: `invoice_issued`, one per document (invoice or credit
note), written in the document's own transaction."""

from __future__ import annotations

from typing import Any

from flotilla_billing.domain.documents import Document

__all__ = ["INVOICE_ISSUED", "SERVICE", "issued_event"]

SERVICE = "billing"
INVOICE_ISSUED = "invoice_issued"


def issued_event(document: Document) -> dict[str, Any]:
    return {
        "document_id": str(document.id),
        "kind": document.kind.value,
        "number": document.number,
        "order_id": document.order_id,
        "customer_id": document.customer_id,
        "currency": document.currency,
        "net_minor": document.net_minor,
        "vat_minor": document.vat_minor,
        "total_minor": document.total_minor,
        "credits_number": document.credits_number,
        "issued_at": document.issued_at.isoformat().replace("+00:00", "Z"),
    }
