"""The billing service's exception tree; entrypoints map it to problems (HTTP) or to a
consumer's verdict (events)."""

from __future__ import annotations

__all__ = [
    "BillingError",
    "DocumentNotFound",
    "EventRefused",
    "InvalidCursor",
    "InvoiceNotIssuedYet",
    "NotAllowed",
]


class BillingError(Exception):
    """Anything billing refuses."""


class DocumentNotFound(BillingError):
    """No such document, or not the caller's: one answer for both."""


class NotAllowed(BillingError):
    """The caller lacks `permission` (another customer's documents need staff rights)."""

    def __init__(self, permission: str) -> None:
        super().__init__(permission)
        self.permission = permission


class InvalidCursor(BillingError):
    """`after` is not a document number."""


class InvoiceNotIssuedYet(BillingError):
    """A refund arrived before its order's confirmation was applied: try again later
    (the consumer retries with backoff)."""


class EventRefused(BillingError):
    """An event that can never be applied (its data breaks the contract, or contradicts
    what billing holds): dead-lettered at once, with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
