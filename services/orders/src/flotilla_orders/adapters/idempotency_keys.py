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

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_orders.adapters.tables import idempotency_keys
from flotilla_orders.service_layer.ports import DuplicateIdempotencyKey, StoredKey

__all__ = ["SqlIdempotencyKeys"]

_k = idempotency_keys.c


class SqlIdempotencyKeys:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, scope: str, key: str) -> StoredKey | None:
        row = (
            await self.session.execute(
                select(_k.fingerprint, _k.body).where(_k.scope == scope, _k.key == key)
            )
        ).one_or_none()
        if row is None:
            return None
        return StoredKey(row.fingerprint, uuid.UUID(json.loads(row.body)["order_id"]))

    async def remember(
        self, scope: str, key: str, *, fingerprint: str, order_id: uuid.UUID, at: dt.datetime
    ) -> None:
        try:
            await self.session.execute(
                idempotency_keys.insert().values(
                    scope=scope,
                    key=key,
                    fingerprint=fingerprint,
                    status=202,
                    body=json.dumps({"order_id": str(order_id)}),
                    created_at=at,
                )
            )
        except IntegrityError as exc:
            raise DuplicateIdempotencyKey(key) from exc
