"""In-memory stand-ins for billing's ports (unit tests)."""

from __future__ import annotations

import uuid
from typing import Any, Self

from flotilla_billing.domain import Document, DocumentKind, parse_number


class FakeDocuments:
    def __init__(self) -> None:
        self.by_id: dict[uuid.UUID, Document] = {}
        self.counters: dict[int, int] = {}

    async def next_number(self, year: int) -> int:
        self.counters[year] = self.counters.get(year, 0) + 1
        return self.counters[year]

    async def add(self, document: Document) -> None:
        assert all(
            (d.order_id, d.kind) != (document.order_id, document.kind) for d in self.by_id.values()
        )
        self.by_id[document.id] = document

    async def get(self, document_id: uuid.UUID) -> Document | None:
        return self.by_id.get(document_id)

    async def for_order(self, order_id: str, kind: DocumentKind) -> Document | None:
        return next(
            (d for d in self.by_id.values() if d.order_id == order_id and d.kind is kind), None
        )

    async def page_for_customer(
        self, customer_id: str, *, limit: int, before: tuple[int, int] | None
    ) -> list[Document]:
        def place(d: Document) -> tuple[int, int]:
            found = parse_number(d.number)
            assert found is not None
            return found

        mine = sorted(
            (d for d in self.by_id.values() if d.customer_id == customer_id),
            key=place,
            reverse=True,
        )
        return [d for d in mine if before is None or place(d) < before][:limit]


class FakeEventLog:
    def __init__(self) -> None:
        self.added: list[tuple[str, str, dict[str, Any]]] = []

    async def add(self, event: str, *, subject: str, data: dict[str, Any]) -> None:
        self.added.append((event, subject, data))


class FakeUnitOfWork:
    def __init__(self, documents: FakeDocuments, events: FakeEventLog) -> None:
        self.documents = documents
        self.events = events

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def commit(self) -> None:
        return None


class FakeUnitOfWorkFactory:
    def __init__(self) -> None:
        self.documents = FakeDocuments()
        self.events = FakeEventLog()

    def __call__(self, *, write: bool = True) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.documents, self.events)
