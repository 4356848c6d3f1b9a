"""Idempotency-Keys of order requests, in the kit's table (`flotilla_kit.idempotency`).

The kit's `run_idempotently` stores a whole response; an order's answer changes as its
saga runs, so we store which order the key created (status 202, body `{"order_id": ...}`)
and answer a replay from the order's current state. The row is written in the same
transaction as the order.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

from sqlalchemy import bindparam, select

from flotilla_kit.db import IntegrityViolation, Query, Transaction
from flotilla_orders.adapters.tables import idempotency_keys
from flotilla_orders.service_layer.ports import DuplicateIdempotencyKey, StoredKey

__all__ = ["SqlIdempotencyKeys"]

_k = idempotency_keys.c
_FIND = Query(
    select(_k.fingerprint, _k.body).where(
        _k.scope == bindparam("scope"), _k.key == bindparam("key")
    )
)
_REMEMBER = Query(idempotency_keys.insert().values({c.name: bindparam(c.name) for c in _k}))


class SqlIdempotencyKeys:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def find(self, scope: str, key: str) -> StoredKey | None:
        # (scope, key) is the primary key: one row at most.
        row = await self.transaction.first(_FIND, scope=scope, key=key)
        if row is None:
            return None
        return StoredKey(row.fingerprint, uuid.UUID(json.loads(row.body)["order_id"]))

    async def remember(
        self, scope: str, key: str, *, fingerprint: str, order_id: uuid.UUID, at: dt.datetime
    ) -> None:
        try:
            await self.transaction.execute(
                _REMEMBER,
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                status=202,
                body=json.dumps({"order_id": str(order_id)}),
                created_at=at,
            )
        except IntegrityViolation as exc:
            raise DuplicateIdempotencyKey(key) from exc
