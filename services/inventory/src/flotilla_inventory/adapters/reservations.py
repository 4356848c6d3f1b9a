"""Reservations and their lines over SQLAlchemy Core, on SQLite and PostgreSQL alike.

Leaving HELD is one compare-and-set statement (`... WHERE state = 'held' AND deadline`)
with RETURNING: of two transactions deciding the same reservation, the second finds it
decided and changes nothing. On PostgreSQL it waits for the first to end, then re-reads
the row (read committed), so it never decides a reservation twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import String, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.base import Executable

from flotilla_inventory.adapters.tables import reservation_lines
from flotilla_inventory.adapters.tables import reservations as reservations_table
from flotilla_inventory.domain import Refusal, Reservation, ReservationState, ReservedLine
from flotilla_kit.db import Query, Row, Transaction, UtcDateTime

__all__ = ["SqlReservations"]

_DETAIL_LENGTH = 300
_ID = bindparam("reservation_id", type_=String())
_NOW = bindparam("now", type_=UtcDateTime())
_TO = bindparam("to", type_=String())
_HELD = ReservationState.HELD.value
_HEADER_COLUMNS = tuple(column.name for column in reservations_table.c)
# The kit runs a statement with one set of parameters (and returns rows only then), so
# an insert of several reservations is a multi-row INSERT ... RETURNING, one statement
# per row count up to this (a stream's default window): a batch is one statement, a
# larger one (a wider window) one per this many rows.
_MOST_HEADERS = 64
# The parameter name of each column in the i-th row of those statements.
_HEADER_KEYS = [{name: f"{name}_{i}" for name in _HEADER_COLUMNS} for i in range(_MOST_HEADERS)]


def _header_insert(rows: int) -> Query:
    """Reservations `id_0, state_0, ... id_<rows-1>, ...` in that order (the lock order),
    those whose id is taken left alone; the ids it inserted."""

    def build(dialect_name: str) -> Executable:
        insert = postgresql_insert if dialect_name == "postgresql" else sqlite_insert
        return (
            insert(reservations_table)
            .values([{n: bindparam(k) for n, k in keys.items()} for keys in _HEADER_KEYS[:rows]])
            .on_conflict_do_nothing(index_elements=[reservations_table.c.id])
            .returning(reservations_table.c.id)
        )

    return Query(build)


# Declared here, built and compiled by the kit the first time a batch of that size runs.
_INSERT_HEADERS = {rows: _header_insert(rows) for rows in range(1, _MOST_HEADERS + 1)}
_INSERT_LINES = Query(
    reservation_lines.insert().values({c.name: bindparam(c.name) for c in reservation_lines.c})
)


def _decide(*, overdue: bool) -> Query:
    deadline = (
        reservations_table.c.expires_at <= _NOW
        if overdue
        else reservations_table.c.expires_at > _NOW
    )
    return Query(
        update(reservations_table)
        .where(reservations_table.c.id == _ID, reservations_table.c.state == _HELD, deadline)
        .values(state=_TO, decided_at=_NOW)
        .returning(*reservations_table.c)
    )


_DECIDE_IN_TIME = _decide(overdue=False)
_DECIDE_OVERDUE = _decide(overdue=True)
_LINE_COLUMNS = (
    reservation_lines.c.product_id,
    reservation_lines.c.quantity,
    reservation_lines.c.unit_price_minor,
    reservation_lines.c.currency,
)
_LINES = Query(
    select(*_LINE_COLUMNS)
    .where(reservation_lines.c.reservation_id == _ID)
    .order_by(reservation_lines.c.product_id)
)
# The reservation and its lines in one statement: one row per line (in product order),
# or a single row with NULL line columns when it has none.
_GET = Query(
    select(reservations_table, *_LINE_COLUMNS)
    .select_from(
        reservations_table.outerjoin(
            reservation_lines, reservation_lines.c.reservation_id == reservations_table.c.id
        )
    )
    .where(reservations_table.c.id == _ID)
    .order_by(reservation_lines.c.product_id)
)
_OVERDUE = Query(
    select(reservations_table.c.id)
    .where(reservations_table.c.state == _HELD, reservations_table.c.expires_at <= _NOW)
    .order_by(reservations_table.c.expires_at)
    .limit(bindparam("limit"))
)


def _header(reservation: Reservation) -> dict[str, Any]:
    return {
        "id": reservation.id,
        "state": reservation.state.value,
        "refusal": reservation.refusal.value if reservation.refusal else None,
        "detail": reservation.detail[:_DETAIL_LENGTH],
        "short_products": json.dumps(list(reservation.short_products)),
        "fingerprint": reservation.fingerprint,
        "created_at": reservation.created_at,
        "expires_at": reservation.expires_at,
        "decided_at": reservation.decided_at,
    }


def _line(reservation_id: str, line: ReservedLine) -> dict[str, Any]:
    return {
        "reservation_id": reservation_id,
        "product_id": line.product_id,
        "quantity": line.quantity,
        "unit_price_minor": line.unit_price_minor,
        "currency": line.currency,
    }


def _chunks(reservations: Sequence[Reservation]) -> Iterator[Sequence[Reservation]]:
    """Consecutive runs of at most `_MOST_HEADERS`, in the order given."""
    for start in range(0, len(reservations), _MOST_HEADERS):
        yield reservations[start : start + _MOST_HEADERS]


def _reserved_line(row: Row) -> ReservedLine:
    return ReservedLine(row.product_id, int(row.quantity), int(row.unit_price_minor), row.currency)


def _reservation(row: Row, lines: tuple[ReservedLine, ...]) -> Reservation:
    return Reservation(
        id=row.id,
        state=ReservationState(row.state),
        created_at=row.created_at,
        lines=lines,
        expires_at=row.expires_at,
        decided_at=row.decided_at,
        refusal=Refusal(row.refusal) if row.refusal is not None else None,
        detail=row.detail,
        short_products=tuple(json.loads(row.short_products)),
        fingerprint=row.fingerprint,
    )


class SqlReservations:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def _insert_headers(self, reservations: Sequence[Reservation]) -> set[str]:
        inserted: set[str] = set()
        for chunk in _chunks(reservations):
            values: dict[str, Any] = {}
            for keys, reservation in zip(_HEADER_KEYS, chunk, strict=False):
                values.update((keys[name], value) for name, value in _header(reservation).items())
            rows = await self.transaction.all(_INSERT_HEADERS[len(chunk)], **values)
            inserted.update(row.id for row in rows)
        return inserted

    async def add(self, reservation: Reservation) -> bool:
        if not await self._insert_headers([reservation]):
            return False
        await self.add_lines([(reservation.id, line) for line in reservation.lines])
        return True

    async def add_many(self, reservations: Sequence[Reservation]) -> set[str]:
        """Multi-row INSERTs for the reservations (in the order given) and one
        executemany for their lines; the ids it inserted (those taken already are left
        alone)."""
        inserted = await self._insert_headers(reservations)
        await self.add_lines(
            [(r.id, line) for r in reservations if r.id in inserted for line in r.lines]
        )
        return inserted

    async def add_lines(self, lines: Sequence[tuple[str, ReservedLine]]) -> None:
        if lines:
            await self.transaction.execute_many(
                _INSERT_LINES, [_line(reservation_id, line) for reservation_id, line in lines]
            )

    async def get(self, reservation_id: str) -> Reservation | None:
        rows = await self.transaction.all(_GET, reservation_id=reservation_id)
        if not rows:
            return None
        lines = tuple(_reserved_line(row) for row in rows if row.product_id is not None)
        return _reservation(rows[0], lines)

    async def decide(
        self,
        reservation_id: str,
        *,
        to: ReservationState,
        now: dt.datetime,
        overdue: bool = False,
    ) -> Reservation | None:
        row = await self.transaction.first(
            _DECIDE_OVERDUE if overdue else _DECIDE_IN_TIME,
            reservation_id=reservation_id,
            to=to.value,
            now=now,
        )
        if row is None:
            return None
        lines = await self.transaction.all(_LINES, reservation_id=reservation_id)
        return _reservation(row, tuple(_reserved_line(line) for line in lines))

    async def overdue(self, now: dt.datetime, *, limit: int) -> list[str]:
        rows = await self.transaction.all(_OVERDUE, now=now, limit=limit)
        return [row.id for row in rows]
