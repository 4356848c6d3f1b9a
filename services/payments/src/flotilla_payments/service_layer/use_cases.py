"""Reading transfers: one function per use case. Ownership is decided here, next to the
data; the HTTP layer only checks that a caller is authenticated."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from flotilla_kit.tokens import Principal
from flotilla_payments.domain import Transfer
from flotilla_payments.service_layer.errors import InvalidCursor, NotAllowed, TransferNotFound
from flotilla_payments.service_layer.ports import PaymentsUnitOfWork

__all__ = [
    "MAX_OLDER_THAN_S",
    "READ",
    "READ_ANY",
    "TransferPage",
    "get_transfer",
    "list_transfers",
    "unfinished_transfers",
]

READ = "payments:read"
READ_ANY = "payments:read:any"
# The longest `older_than_s` of `unfinished_transfers`: a century (a datetime cannot go
# back much further than now).
MAX_OLDER_THAN_S = 100 * 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class TransferPage:
    items: list[Transfer]
    next_after: str | None  # pass as `after` for the next page; None on the last one


def _parse_id(transfer_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(transfer_id)
    except ValueError:
        return None


async def get_transfer(
    uow: PaymentsUnitOfWork, *, principal: Principal, transfer_id: str
) -> Transfer:
    may_read_any = principal.can(READ_ANY)
    if not may_read_any and not principal.can(READ):
        raise NotAllowed(READ)
    key = _parse_id(transfer_id)
    transfer = await uow.transfers.get(key) if key is not None else None
    if transfer is None or (transfer.initiator != principal.subject and not may_read_any):
        # Someone else's transfer looks exactly like a missing one: ids cannot be probed.
        raise TransferNotFound(transfer_id)
    return transfer


async def list_transfers(
    uow: PaymentsUnitOfWork, *, principal: Principal, limit: int, after: str | None = None
) -> TransferPage:
    """The caller's own transfers, newest first."""
    if not principal.can(READ) and not principal.can(READ_ANY):
        raise NotAllowed(READ)
    cursor: Transfer | None = None
    if after is not None:
        key = _parse_id(after)
        cursor = await uow.transfers.get(key) if key is not None else None
        if cursor is None or cursor.initiator != principal.subject:
            raise InvalidCursor()
    found = await uow.transfers.page_for_initiator(principal.subject, limit=limit + 1, after=cursor)
    items = found[:limit]
    more = len(found) > limit
    return TransferPage(items=items, next_after=str(items[-1].id) if more else None)


async def unfinished_transfers(
    uow: PaymentsUnitOfWork, *, now: dt.datetime, older_than_s: float = 0.0
) -> list[Transfer]:
    """Transfers in doubt (not COMMITTED or ABORTED yet), oldest first (operators: the
    `in-doubt` command, and `GET /api/v1/in-doubt-transfers` for `payments:read:any`);
    `older_than_s`: only those created at least that long before `now`, in
    0..`MAX_OLDER_THAN_S`."""
    created_before = now - dt.timedelta(seconds=older_than_s) if older_than_s > 0 else None
    return await uow.transfers.unfinished(created_before=created_before)
