"""The transfer log over SQLAlchemy Core; works on SQLite and PostgreSQL alike.

Every write that changes who drives a transfer or where it stands is a compare-and-set:
an UPDATE whose WHERE names what the writer last saw, and whose row count says whether
it won.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CursorResult, Result, and_, func, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_payments.adapters.tables import transfers
from flotilla_payments.domain import (
    UNFINISHED_STATES,
    Refusal,
    Transfer,
    TransferPath,
    TransferState,
)

__all__ = ["SqlTransferRepository"]

_UNFINISHED = sorted(s.value for s in UNFINISHED_STATES)
_t = transfers.c


def _won(result: Result[Any]) -> bool:
    # DML statements always produce a cursor result; the type is only widened by the API.
    assert isinstance(result, CursorResult)
    return int(result.rowcount) == 1


def _transfer(m: RowMapping) -> Transfer:
    return Transfer(
        id=m["id"],
        from_account=m["from_account"],
        to_account=m["to_account"],
        amount_minor=int(m["amount_minor"]),
        currency=m["currency"],
        reference=m["reference"],
        initiator=m["initiator"],
        required_owner=m["required_owner"],
        path=TransferPath(m["path"]),
        state=TransferState(m["state"]),
        refusal=Refusal(m["refusal"]) if m["refusal"] is not None else None,
        created_at=m["created_at"],
        decided_at=m["decided_at"],
        completed_at=m["completed_at"],
        lease_owner=m["lease_owner"],
        lease_until=m["lease_until"],
        attempts=int(m["attempts"]),
        next_attempt_at=m["next_attempt_at"],
    )


def _lease_free(now: dt.datetime) -> Any:
    return or_(_t.lease_until.is_(None), _t.lease_until <= now)


class SqlTransferRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, transfer: Transfer) -> None:
        await self.session.execute(
            transfers.insert().values(
                id=transfer.id,
                from_account=transfer.from_account,
                to_account=transfer.to_account,
                amount_minor=transfer.amount_minor,
                currency=transfer.currency,
                reference=transfer.reference,
                initiator=transfer.initiator,
                required_owner=transfer.required_owner,
                path=transfer.path.value,
                state=transfer.state.value,
                refusal=transfer.refusal.value if transfer.refusal else None,
                created_at=transfer.created_at,
                decided_at=transfer.decided_at,
                completed_at=transfer.completed_at,
                lease_owner=transfer.lease_owner,
                lease_until=transfer.lease_until,
                attempts=transfer.attempts,
                next_attempt_at=transfer.next_attempt_at,
            )
        )

    async def get(self, transfer_id: uuid.UUID) -> Transfer | None:
        row = (await self.session.execute(select(transfers).where(_t.id == transfer_id))).first()
        return _transfer(row._mapping) if row else None

    async def page_for_initiator(
        self, initiator: str, *, limit: int, after: Transfer | None
    ) -> list[Transfer]:
        query = select(transfers).where(_t.initiator == initiator)
        if after is not None:
            query = query.where(
                or_(
                    _t.created_at < after.created_at,
                    and_(_t.created_at == after.created_at, _t.id < after.id),
                )
            )
        rows = await self.session.execute(
            query.order_by(_t.created_at.desc(), _t.id.desc()).limit(limit)
        )
        return [_transfer(row._mapping) for row in rows]

    async def save_transition(self, transfer: Transfer, *, expected: TransferState) -> bool:
        values: dict[str, Any] = {
            "state": transfer.state.value,
            "refusal": transfer.refusal.value if transfer.refusal else None,
            "decided_at": transfer.decided_at,
            "completed_at": transfer.completed_at,
        }
        if transfer.is_final:
            # Nobody needs to drive it any more. Otherwise the lease is left as it is: it
            # may have changed hands since this writer read the row.
            values |= {"lease_owner": None, "lease_until": None}
        result = await self.session.execute(
            update(transfers)
            .where(_t.id == transfer.id, _t.state == expected.value)
            .values(**values)
        )
        return _won(result)

    async def extend_lease(
        self,
        transfer_id: uuid.UUID,
        *,
        owner: str,
        state: TransferState,
        until: dt.datetime,
        attempts: int,
        next_attempt_at: dt.datetime,
    ) -> bool:
        result = await self.session.execute(
            update(transfers)
            .where(_t.id == transfer_id, _t.lease_owner == owner, _t.state == state.value)
            .values(lease_until=until, attempts=attempts, next_attempt_at=next_attempt_at)
        )
        return _won(result)

    async def release_lease(
        self,
        transfer_id: uuid.UUID,
        *,
        owner: str,
        attempts: int,
        next_attempt_at: dt.datetime,
    ) -> bool:
        result = await self.session.execute(
            update(transfers)
            .where(_t.id == transfer_id, _t.lease_owner == owner, _t.state.in_(_UNFINISHED))
            .values(
                lease_owner=None,
                lease_until=None,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
            )
        )
        return _won(result)

    async def release_leases_of(self, owner: str) -> int:
        result = await self.session.execute(
            update(transfers)
            .where(_t.lease_owner == owner, _t.state.in_(_UNFINISHED))
            .values(lease_owner=None, lease_until=None)
        )
        assert isinstance(result, CursorResult)
        return int(result.rowcount)

    async def due(self, *, now: dt.datetime, limit: int) -> list[uuid.UUID]:
        rows = await self.session.execute(
            select(_t.id)
            .where(_t.state.in_(_UNFINISHED), _t.next_attempt_at <= now, _lease_free(now))
            .order_by(_t.next_attempt_at, _t.id)
            .limit(limit)
        )
        return [row.id for row in rows]

    async def claim(
        self, transfer_id: uuid.UUID, *, now: dt.datetime, owner: str, until: dt.datetime
    ) -> Transfer | None:
        result = await self.session.execute(
            update(transfers)
            .where(_t.id == transfer_id, _t.state.in_(_UNFINISHED), _lease_free(now))
            .values(lease_owner=owner, lease_until=until)
        )
        if not _won(result):
            return None
        return await self.get(transfer_id)

    async def count_unfinished(self) -> int:
        count = (
            await self.session.execute(
                select(func.count()).select_from(transfers).where(_t.state.in_(_UNFINISHED))
            )
        ).scalar_one()
        return int(count)

    async def oldest_unfinished(self) -> dt.datetime | None:
        oldest: dt.datetime | None = (
            await self.session.execute(
                select(func.min(_t.created_at)).where(_t.state.in_(_UNFINISHED))
            )
        ).scalar_one()
        return oldest

    async def unfinished(self, *, created_before: dt.datetime | None) -> list[Transfer]:
        query = select(transfers).where(_t.state.in_(_UNFINISHED))
        if created_before is not None:
            query = query.where(_t.created_at <= created_before)
        rows = await self.session.execute(query.order_by(_t.created_at, _t.id))
        return [_transfer(row._mapping) for row in rows]
