"""Reservations and their lines over SQLAlchemy Core, on SQLite and PostgreSQL alike.

Leaving HELD is one compare-and-set statement (`... WHERE state = 'held' AND deadline`)
with RETURNING: of two transactions deciding the same reservation, the second finds it
decided and changes nothing. On PostgreSQL it waits for the first to end, then re-reads
the row (read committed), so it never decides a reservation twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import String, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult, Row
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_inventory.adapters.tables import reservation_lines
from flotilla_inventory.adapters.tables import reservations as reservations_table
from flotilla_inventory.domain import Refusal, Reservation, ReservationState, ReservedLine
from flotilla_kit.db import UtcDateTime

__all__ = ["SqlReservations"]

_DETAIL_LENGTH = 300
_ID = bindparam("reservation_id", type_=String())
_NOW = bindparam("now", type_=UtcDateTime())
_TO = bindparam("to", type_=String())
_HELD = ReservationState.HELD.value


def _decide(*, overdue: bool) -> Any:
    deadline = (
        reservations_table.c.expires_at <= _NOW
        if overdue
        else reservations_table.c.expires_at > _NOW
    )
    return (
        update(reservations_table)
        .where(reservations_table.c.id == _ID, reservations_table.c.state == _HELD, deadline)
        .values(state=_TO, decided_at=_NOW)
        .returning(*reservations_table.c)
    )


_DECIDE_IN_TIME = _decide(overdue=False)
_DECIDE_OVERDUE = _decide(overdue=True)
_GET = select(reservations_table).where(reservations_table.c.id == _ID)
_LINES = (
    select(
        reservation_lines.c.product_id,
        reservation_lines.c.quantity,
        reservation_lines.c.unit_price_minor,
        reservation_lines.c.currency,
    )
    .where(reservation_lines.c.reservation_id == _ID)
    .order_by(reservation_lines.c.product_id)
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


def _reservation(row: Row[Any], lines: tuple[ReservedLine, ...]) -> Reservation:
    m = row._mapping
    return Reservation(
        id=m["id"],
        state=ReservationState(m["state"]),
        created_at=m["created_at"],
        lines=lines,
        expires_at=m["expires_at"],
        decided_at=m["decided_at"],
        refusal=Refusal(m["refusal"]) if m["refusal"] is not None else None,
        detail=m["detail"],
        short_products=tuple(json.loads(m["short_products"])),
        fingerprint=m["fingerprint"],
    )


class SqlReservations:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, reservation: Reservation) -> bool:
        insert = (
            postgresql_insert
            if self.session.get_bind().dialect.name == "postgresql"
            else sqlite_insert
        )
        statement = (
            insert(reservations_table)
            .values(**_header(reservation))
            .on_conflict_do_nothing(index_elements=[reservations_table.c.id])
        )
        result = cast(CursorResult[Any], await self.session.execute(statement))
        if result.rowcount != 1:
            return False
        if reservation.lines:
            await self.session.execute(
                reservation_lines.insert(),
                [_line(reservation.id, line) for line in reservation.lines],
            )
        return True

    async def add_many(self, reservations: Sequence[Reservation]) -> set[str]:
        """One INSERT for the reservations (in the order given) and one for their lines;
        the ids it inserted (those taken already are left alone)."""
        if not reservations:
            return set()
        insert = (
            postgresql_insert
            if self.session.get_bind().dialect.name == "postgresql"
            else sqlite_insert
        )
        statement = (
            insert(reservations_table)
            .on_conflict_do_nothing(index_elements=[reservations_table.c.id])
            .returning(reservations_table.c.id)
        )
        result = await self.session.execute(statement, [_header(r) for r in reservations])
        inserted = set(result.scalars().all())
        await self.add_lines(
            [(r.id, line) for r in reservations if r.id in inserted for line in r.lines]
        )
        return inserted

    async def add_lines(self, lines: Sequence[tuple[str, ReservedLine]]) -> None:
        if lines:
            await self.session.execute(
                reservation_lines.insert(),
                [_line(reservation_id, line) for reservation_id, line in lines],
            )

    async def _lines(self, reservation_id: str) -> tuple[ReservedLine, ...]:
        rows = await self.session.execute(_LINES, {"reservation_id": reservation_id})
        return tuple(
            ReservedLine(r.product_id, int(r.quantity), int(r.unit_price_minor), r.currency)
            for r in rows
        )

    async def get(self, reservation_id: str) -> Reservation | None:
        row = (await self.session.execute(_GET, {"reservation_id": reservation_id})).first()
        if row is None:
            return None
        return _reservation(row, await self._lines(reservation_id))

    async def decide(
        self,
        reservation_id: str,
        *,
        to: ReservationState,
        now: dt.datetime,
        overdue: bool = False,
    ) -> Reservation | None:
        statement = _DECIDE_OVERDUE if overdue else _DECIDE_IN_TIME
        row = (
            await self.session.execute(
                statement, {"reservation_id": reservation_id, "to": to.value, "now": now}
            )
        ).first()
        if row is None:
            return None
        return _reservation(row, await self._lines(reservation_id))

    async def overdue(self, now: dt.datetime, *, limit: int) -> list[str]:
        rows = await self.session.execute(
            select(reservations_table.c.id)
            .where(reservations_table.c.state == _HELD, reservations_table.c.expires_at <= now)
            .order_by(reservations_table.c.expires_at)
            .limit(limit)
        )
        return [row.id for row in rows]
