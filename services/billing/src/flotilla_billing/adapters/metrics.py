"""Billing's own metric, beside the kit's HTTP and event metrics: the documents issued, by
kind. The alert FlotillaInvoicingBehind compares its invoices with the orders confirmed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from flotilla_billing.domain import DocumentKind

__all__ = ["BillingMetrics"]


class BillingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.documents = Counter(
            "flotilla_billing_documents",
            "Documents issued, by kind (invoice, credit_note): counted when the consumer's "
            "handler has written one (a commit that then fails is retried and counted again).",
            ["kind"],
            registry=registry,
        )
        for kind in DocumentKind:  # present at 0, so the first one is an increase
            self.documents.labels(kind=kind.value)

    def issued(self, kind: DocumentKind) -> None:
        self.documents.labels(kind=kind.value).inc()
