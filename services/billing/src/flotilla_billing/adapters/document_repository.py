"""Documents over the kit's transactions; the same statements on SQLite and PostgreSQL.

Numbers: `next_number` first makes sure the year's counter row exists (INSERT ... ON
CONFLICT DO NOTHING: of two first issuers of a year one inserts, the other waits for it
and inserts nothing), then takes the next place with `UPDATE ... SET last_seq = last_seq
+ 1 ... RETURNING last_seq`. The UPDATE holds the row (PostgreSQL: its row lock; SQLite:
the file's write lock, taken by every write transaction up front) until the document's
transaction ends, so the next issuer reads the committed value: no two documents share a
number, and a transaction that rolls back takes its number back with it (no gap).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import Insert

from flotilla_billing.adapters.tables import document_lines, document_numbers, documents
from flotilla_billing.domain import Document, DocumentKind, DocumentLine, parse_number
from flotilla_kit.db import Query, Row, Transaction

__all__ = ["SqlDocuments"]

_d = documents.c
_l = document_lines.c
_n = document_numbers.c


def _insert_unless_there(table: Table) -> Query:
    def build(dialect_name: str) -> Insert:
        values: dict[str, Any] = {c.name: bindparam(c.name) for c in table.c}
        keys = list(table.primary_key.columns)
        if dialect_name == "postgresql":
            return (
                postgresql.insert(table).values(values).on_conflict_do_nothing(index_elements=keys)
            )
        return sqlite.insert(table).values(values).on_conflict_do_nothing(index_elements=keys)

    return Query(build)


_OPEN_YEAR = _insert_unless_there(document_numbers)
_TAKE_NUMBER = Query(
    update(document_numbers)
    .where(_n.year == bindparam("year"))
    .values(last_seq=_n.last_seq + 1)
    .returning(_n.last_seq)
)
_INSERT_DOCUMENT = Query(documents.insert().values({c.name: bindparam(c.name) for c in _d}))
_INSERT_LINES = Query(document_lines.insert().values({c.name: bindparam(c.name) for c in _l}))


def _with_lines(chosen_documents: Select[Any]) -> Query:
    """The documents selected, each once per line, newest first and lines in order."""
    chosen = chosen_documents.subquery("chosen")
    c = chosen.c
    return Query(
        select(
            chosen,
            _l.product_id,
            _l.quantity,
            _l.unit_price_minor,
            _l.vat_rate_bp,
            _l.net_minor.label("line_net_minor"),
            _l.vat_minor.label("line_vat_minor"),
            _l.amount_minor,
        )
        .select_from(chosen.join(document_lines, _l.document_id == c.id))
        .order_by(c.year.desc(), c.seq.desc(), _l.line_no)
    )


_BY_ID = _with_lines(select(documents).where(_d.id == bindparam("document_id")))
_BY_ORDER = _with_lines(
    select(documents).where(_d.order_id == bindparam("order_id"), _d.kind == bindparam("kind"))
)
_newest_first = (_d.year.desc(), _d.seq.desc())
_FIRST_PAGE = _with_lines(
    select(documents)
    .where(_d.customer_id == bindparam("customer_id"))
    .order_by(*_newest_first)
    .limit(bindparam("limit"))
)
_before_year = bindparam("before_year", type_=_d.year.type)
_NEXT_PAGE = _with_lines(
    select(documents)
    .where(
        _d.customer_id == bindparam("customer_id"),
        or_(
            _d.year < _before_year, and_(_d.year == _before_year, _d.seq < bindparam("before_seq"))
        ),
    )
    .order_by(*_newest_first)
    .limit(bindparam("limit"))
)


def _documents(rows: Sequence[Row]) -> list[Document]:
    """Documents from rows of `_with_lines`: consecutive rows of one document hold its lines."""
    found: list[Document] = []
    lines: list[DocumentLine] = []
    for index, row in enumerate(rows):
        lines.append(
            DocumentLine(
                product_id=row.product_id,
                quantity=int(row.quantity),
                unit_price_minor=int(row.unit_price_minor),
                vat_rate_bp=int(row.vat_rate_bp),
                net_minor=int(row.line_net_minor),
                vat_minor=int(row.line_vat_minor),
                amount_minor=int(row.amount_minor),
            )
        )
        if index + 1 == len(rows) or rows[index + 1].id != row.id:
            found.append(
                Document(
                    id=row.id,
                    kind=DocumentKind(row.kind),
                    number=row.number,
                    order_id=row.order_id,
                    customer_id=row.customer_id,
                    currency=row.currency,
                    lines=tuple(lines),
                    issued_at=row.issued_at,
                    transfer_id=row.transfer_id,
                    credits_id=row.credits_id,
                    credits_number=row.credits_number,
                )
            )
            lines = []
    return found


class SqlDocuments:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def next_number(self, year: int) -> int:
        await self.transaction.execute(_OPEN_YEAR, year=year, last_seq=0)
        taken = await self.transaction.scalar(_TAKE_NUMBER, year=year)
        return int(taken)

    async def add(self, document: Document) -> None:
        place = parse_number(document.number)
        assert place is not None  # the domain numbers every document
        await self.transaction.execute(
            _INSERT_DOCUMENT,
            id=document.id, kind=document.kind.value, year=place[0], seq=place[1],
            number=document.number, order_id=document.order_id,
            customer_id=document.customer_id, currency=document.currency,
            net_minor=document.net_minor, vat_minor=document.vat_minor,
            total_minor=document.total_minor, transfer_id=document.transfer_id,
            credits_id=document.credits_id, credits_number=document.credits_number,
            issued_at=document.issued_at,
        )  # fmt: skip
        await self.transaction.execute_many(
            _INSERT_LINES,
            [
                {
                    "document_id": document.id,
                    "line_no": number,
                    "product_id": line.product_id,
                    "quantity": line.quantity,
                    "unit_price_minor": line.unit_price_minor,
                    "vat_rate_bp": line.vat_rate_bp,
                    "net_minor": line.net_minor,
                    "vat_minor": line.vat_minor,
                    "amount_minor": line.amount_minor,
                }
                for number, line in enumerate(document.lines)
            ],
        )

    async def get(self, document_id: uuid.UUID) -> Document | None:
        found = _documents(await self.transaction.all(_BY_ID, document_id=document_id))
        return found[0] if found else None

    async def for_order(self, order_id: str, kind: DocumentKind) -> Document | None:
        found = _documents(
            await self.transaction.all(_BY_ORDER, order_id=order_id, kind=kind.value)
        )
        return found[0] if found else None

    async def page_for_customer(
        self, customer_id: str, *, limit: int, before: tuple[int, int] | None
    ) -> list[Document]:
        if before is None:
            rows = await self.transaction.all(_FIRST_PAGE, customer_id=customer_id, limit=limit)
        else:
            rows = await self.transaction.all(
                _NEXT_PAGE, customer_id=customer_id, limit=limit,
                before_year=before[0], before_seq=before[1],
            )  # fmt: skip
        return _documents(rows)
