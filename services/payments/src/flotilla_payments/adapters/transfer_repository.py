"""The transfer log over SQLAlchemy Core; works on SQLite and PostgreSQL alike.

Every write that changes who drives a transfer or where it stands is a compare-and-set:
an UPDATE whose WHERE names what the writer last saw, and whose row count says whether
it won. Every statement is declared once, below, and compiled once per dialect.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy import and_, bindparam, func, literal, or_, select, update

from flotilla_kit.db import Query, Row, Transaction, UtcDateTime
from flotilla_kit.leased_rows import LeaseStatements, SqlLeasedRows
from flotilla_payments.adapters.tables import transfers
from flotilla_payments.domain import (
    UNFINISHED_STATES,
    Refusal,
    Transfer,
    TransferPath,
    TransferState,
)

__all__ = ["SqlTransferRepository"]

_t = transfers.c

# One parameter per state, in a fixed order: the kit's statements take no expanding
# `IN (list)` parameter, and the list never changes.
_IS_UNFINISHED = _t.state.in_([literal(s) for s in sorted(s.value for s in UNFINISHED_STATES)])


_INSERT = Query(transfers.insert().values({c.name: bindparam(c.name) for c in transfers.c}))
_BY_ID = Query(select(transfers).where(_t.id == bindparam("transfer_id")))

_NEWEST_FIRST = (_t.created_at.desc(), _t.id.desc())
_FIRST_PAGE = Query(
    select(transfers)
    .where(_t.initiator == bindparam("initiator"))
    .order_by(*_NEWEST_FIRST)
    .limit(bindparam("limit"))
)
# The cursor's timestamp appears twice: one parameter, passed once.
_after_created_at = bindparam("after_created_at", type_=UtcDateTime())
_NEXT_PAGE = Query(
    select(transfers)
    .where(
        _t.initiator == bindparam("initiator"),
        or_(
            _t.created_at < _after_created_at,
            and_(_t.created_at == _after_created_at, _t.id < bindparam("after_id")),
        ),
    )
    .order_by(*_NEWEST_FIRST)
    .limit(bindparam("limit"))
)

_WHERE_STATE_IS_EXPECTED = (_t.id == bindparam("transfer_id"), _t.state == bindparam("expected"))
_TRANSITION_VALUES: dict[str, Any] = {
    "state": bindparam("state"),
    "refusal": bindparam("refusal"),
    "decided_at": bindparam("decided_at"),
    "completed_at": bindparam("completed_at"),
}
_SAVE_TRANSITION = Query(
    update(transfers).where(*_WHERE_STATE_IS_EXPECTED).values(_TRANSITION_VALUES)
)
# Nobody needs to drive a final transfer any more: its lease goes with the last transition.
_SAVE_FINAL_TRANSITION = Query(
    update(transfers)
    .where(*_WHERE_STATE_IS_EXPECTED)
    .values({**_TRANSITION_VALUES, "lease_owner": None, "lease_until": None})
)
_LEASES = LeaseStatements(
    transfers, unfinished=_IS_UNFINISHED, attempts=_t.attempts, expected=_t.state
)
_OLDEST_UNFINISHED = Query(select(func.min(_t.created_at).label("oldest")).where(_IS_UNFINISHED))
_OLDEST_FIRST = (_t.created_at, _t.id)
_UNFINISHED = Query(select(transfers).where(_IS_UNFINISHED).order_by(*_OLDEST_FIRST))
_UNFINISHED_CREATED_BEFORE = Query(
    select(transfers)
    .where(_IS_UNFINISHED, _t.created_at <= bindparam("created_before"))
    .order_by(*_OLDEST_FIRST)
)


def _columns(transfer: Transfer) -> dict[str, Any]:
    return {
        "id": transfer.id,
        "from_account": transfer.from_account,
        "to_account": transfer.to_account,
        "amount_minor": transfer.amount_minor,
        "currency": transfer.currency,
        "reference": transfer.reference,
        "initiator": transfer.initiator,
        "required_owner": transfer.required_owner,
        "requested_by": transfer.requested_by,
        "path": transfer.path.value,
        "state": transfer.state.value,
        "refusal": transfer.refusal.value if transfer.refusal else None,
        "created_at": transfer.created_at,
        "decided_at": transfer.decided_at,
        "completed_at": transfer.completed_at,
        "lease_owner": transfer.lease_owner,
        "lease_until": transfer.lease_until,
        "attempts": transfer.attempts,
        "next_attempt_at": transfer.next_attempt_at,
    }


def _transfer(row: Row) -> Transfer:
    return Transfer(
        id=row.id,
        from_account=row.from_account,
        to_account=row.to_account,
        amount_minor=int(row.amount_minor),
        currency=row.currency,
        reference=row.reference,
        initiator=row.initiator,
        required_owner=row.required_owner,
        requested_by=row.requested_by,
        path=TransferPath(row.path),
        state=TransferState(row.state),
        refusal=Refusal(row.refusal) if row.refusal is not None else None,
        created_at=row.created_at,
        decided_at=row.decided_at,
        completed_at=row.completed_at,
        lease_owner=row.lease_owner,
        lease_until=row.lease_until,
        attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at,
    )


class SqlTransferRepository(SqlLeasedRows[uuid.UUID, Transfer]):
    lease_statements = _LEASES

    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def add(self, transfer: Transfer) -> None:
        await self.transaction.execute(_INSERT, **_columns(transfer))

    async def get(self, transfer_id: uuid.UUID) -> Transfer | None:
        row = await self.transaction.first(_BY_ID, transfer_id=transfer_id)
        return _transfer(row) if row is not None else None

    async def page_for_initiator(
        self, initiator: str, *, limit: int, after: Transfer | None
    ) -> list[Transfer]:
        if after is None:
            rows = await self.transaction.all(_FIRST_PAGE, initiator=initiator, limit=limit)
        else:
            rows = await self.transaction.all(
                _NEXT_PAGE,
                initiator=initiator,
                after_created_at=after.created_at,
                after_id=after.id,
                limit=limit,
            )
        return [_transfer(row) for row in rows]

    async def save_transition(self, transfer: Transfer, *, expected: TransferState) -> bool:
        # A transfer that is not final keeps its lease as it is: it may have changed hands
        # since this writer read the row.
        changed = await self.transaction.execute(
            _SAVE_FINAL_TRANSITION if transfer.is_final else _SAVE_TRANSITION,
            transfer_id=transfer.id,
            expected=expected.value,
            state=transfer.state.value,
            refusal=transfer.refusal.value if transfer.refusal else None,
            decided_at=transfer.decided_at,
            completed_at=transfer.completed_at,
        )
        return changed == 1

    async def extend_lease(
        self, transfer: Transfer, *, owner: str, until: dt.datetime, next_attempt_at: dt.datetime
    ) -> Transfer | None:
        kept = replace(
            transfer,
            attempts=transfer.attempts + 1,
            next_attempt_at=next_attempt_at,
            lease_until=until,
        )
        extended = await self._extend(
            transfer.id, expected=transfer.state.value, owner=owner, until=until,
            attempts=kept.attempts, next_attempt_at=next_attempt_at,
        )  # fmt: skip
        return kept if extended else None

    async def release_lease(
        self, transfer: Transfer, *, owner: str, next_attempt_at: dt.datetime
    ) -> bool:
        return await self._release(
            transfer.id, owner=owner, attempts=transfer.attempts + 1,
            next_attempt_at=next_attempt_at,
        )  # fmt: skip

    async def oldest_unfinished(self) -> dt.datetime | None:
        oldest: dt.datetime | None = await self.transaction.scalar(_OLDEST_UNFINISHED)
        return oldest

    async def unfinished(self, *, created_before: dt.datetime | None) -> list[Transfer]:
        if created_before is None:
            rows = await self.transaction.all(_UNFINISHED)
        else:
            rows = await self.transaction.all(
                _UNFINISHED_CREATED_BEFORE, created_before=created_before
            )
        return [_transfer(row) for row in rows]
