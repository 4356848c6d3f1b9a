"""Signing keys in SQL (private halves sealed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update

from flotilla_auth.adapters.tables import signing_keys
from flotilla_auth.domain.signing_keys import KeyStatus, SigningKey
from flotilla_auth.service_layer.errors import StorageConflict
from flotilla_kit.db import IntegrityViolation, Query, Row, Transaction

__all__ = ["SqlSigningKeyRepository"]

_MARKER = 1
_k = signing_keys.c
_ACTIVE = Query(select(signing_keys).where(_k.active_marker == _MARKER))
_NEXT = Query(select(signing_keys).where(_k.next_marker == _MARKER))
_ALL = Query(select(signing_keys).order_by(_k.created_at.desc()))
_INSERT = Query(insert(signing_keys).values({column.name: bindparam(column.name) for column in _k}))
# Compare-and-set on the status: of instances promoting at once, PostgreSQL makes the
# later ones wait for the first and then find the key no longer active.
_RETIRE = Query(
    update(signing_keys)
    .where(_k.kid == bindparam("kid"), _k.status == KeyStatus.ACTIVE.value)
    .values(status=KeyStatus.RETIRED.value, active_marker=None, retired_at=bindparam("at"))
)
_ACTIVATE = Query(
    update(signing_keys)
    .where(_k.kid == bindparam("kid"), _k.status == KeyStatus.NEXT.value)
    .values(
        status=KeyStatus.ACTIVE.value,
        next_marker=None,
        active_marker=_MARKER,
        activated_at=bindparam("at"),
    )
)


def _key(row: Row) -> SigningKey:
    return SigningKey(
        kid=row.kid,
        algorithm=row.algorithm,
        public_jwk=dict(row.public_jwk),
        sealed_private_key=row.private_key_pem,
        created_at=row.created_at,
        status=KeyStatus(row.status),
        activated_at=row.activated_at,
        retired_at=row.retired_at,
    )


class SqlSigningKeyRepository:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def get_active(self) -> SigningKey | None:
        row = await self._transaction.first(_ACTIVE)
        return _key(row) if row is not None else None

    async def get_next(self) -> SigningKey | None:
        row = await self._transaction.first(_NEXT)
        return _key(row) if row is not None else None

    async def add(self, key: SigningKey) -> None:
        try:
            await self._transaction.execute(
                _INSERT,
                kid=key.kid,
                algorithm=key.algorithm,
                public_jwk=dict(key.public_jwk),
                private_key_pem=key.sealed_private_key,
                created_at=key.created_at,
                status=key.status.value,
                activated_at=key.activated_at,
                retired_at=key.retired_at,
                active_marker=_MARKER if key.status is KeyStatus.ACTIVE else None,
                next_marker=_MARKER if key.status is KeyStatus.NEXT else None,
            )
        except IntegrityViolation as exc:
            raise StorageConflict(f"another {key.status.value} signing key exists") from exc

    async def retire(self, kid: str, at: datetime) -> bool:
        return await self._transaction.execute(_RETIRE, kid=kid, at=at) == 1

    async def activate(self, kid: str, at: datetime) -> bool:
        try:
            changed = await self._transaction.execute(_ACTIVATE, kid=kid, at=at)
        except IntegrityViolation as exc:
            raise StorageConflict("another signing key is active") from exc
        return changed == 1

    async def list_all(self) -> Sequence[SigningKey]:
        return [_key(row) for row in await self._transaction.all(_ALL)]
