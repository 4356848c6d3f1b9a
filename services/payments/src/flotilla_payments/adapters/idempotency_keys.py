"""Idempotency-Keys of transfer requests, in the kit's table (`flotilla_kit.idempotency`).

The kit's `run_idempotently` stores a whole response; a transfer's answer changes as it
progresses, so we store which transfer the key created (status 202, body
`{"transfer_id": ...}`) and answer a replay from the transfer's current state. The row is
written in the same transaction as the PREPARING transfer.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

from sqlalchemy import bindparam, select

from flotilla_kit.db import IntegrityViolation, Query, Transaction
from flotilla_payments.adapters.tables import idempotency_keys
from flotilla_payments.service_layer.ports import DuplicateIdempotencyKey, StoredKey

__all__ = ["SqlIdempotencyKeys"]

_k = idempotency_keys.c

_FIND = Query(
    select(_k.fingerprint, _k.body).where(
        _k.scope == bindparam("scope"), _k.key == bindparam("key")
    )
)
_REMEMBER = Query(
    idempotency_keys.insert().values(
        scope=bindparam("scope"),
        key=bindparam("key"),
        fingerprint=bindparam("fingerprint"),
        status=202,
        body=bindparam("body"),
        created_at=bindparam("created_at"),
    )
)


class SqlIdempotencyKeys:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def find(self, scope: str, key: str) -> StoredKey | None:
        row = await self.transaction.first(_FIND, scope=scope, key=key)
        if row is None:
            return None
        return StoredKey(row.fingerprint, uuid.UUID(json.loads(row.body)["transfer_id"]))

    async def remember(
        self,
        scope: str,
        key: str,
        *,
        fingerprint: str,
        transfer_id: uuid.UUID,
        at: dt.datetime,
    ) -> None:
        try:
            await self.transaction.execute(
                _REMEMBER,
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                body=json.dumps({"transfer_id": str(transfer_id)}),
                created_at=at,
            )
        except IntegrityViolation as exc:
            # Any constraint, as before the kit had its own errors; in practice the
            # primary key (scope, key): another request stored it first.
            raise DuplicateIdempotencyKey(key) from exc
