"""What the use cases ask of the world: documents, their numbers and the outbox, in one
transaction."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from flotilla_billing.domain import Document, DocumentKind
from flotilla_kit.unit_of_work import UnitOfWork, UnitOfWorkFactory

__all__ = ["BillingUnitOfWork", "Documents", "EventLog", "UnitOfWorkFactory"]


class Documents(Protocol):
    async def next_number(self, year: int) -> int:
        """The next place in `year`'s sequence, taken in the caller's transaction: a
        rollback gives it back, and a concurrent caller waits for this transaction."""

    async def add(self, document: Document) -> None: ...

    async def get(self, document_id: uuid.UUID) -> Document | None: ...

    async def for_order(self, order_id: str, kind: DocumentKind) -> Document | None: ...

    async def page_for_customer(
        self, customer_id: str, *, limit: int, before: tuple[int, int] | None
    ) -> list[Document]:
        """Newest first (by number); `before`: only those numbered before (year, place)."""


class EventLog(Protocol):
    async def add(self, event: str, *, subject: str, data: dict[str, Any]) -> None: ...


class BillingUnitOfWork(UnitOfWork, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def documents(self) -> Documents: ...

    @property
    def events(self) -> EventLog: ...
