"""Signing keys in SQL (private halves sealed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_auth.adapters._rows import count_rows
from flotilla_auth.adapters.tables import signing_keys
from flotilla_auth.domain.signing_keys import KeyStatus, SigningKey
from flotilla_auth.service_layer.errors import StorageConflict

__all__ = ["SqlSigningKeyRepository"]

_MARKER = 1


def _key(row: RowMapping) -> SigningKey:
    return SigningKey(
        kid=row["kid"],
        algorithm=row["algorithm"],
        public_jwk=dict(row["public_jwk"]),
        sealed_private_key=row["private_key_pem"],
        created_at=row["created_at"],
        status=KeyStatus(row["status"]),
        activated_at=row["activated_at"],
        retired_at=row["retired_at"],
    )


class SqlSigningKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get_active(self) -> SigningKey | None:
        return await self._one(signing_keys.c.active_marker == _MARKER)

    async def get_next(self) -> SigningKey | None:
        return await self._one(signing_keys.c.next_marker == _MARKER)

    async def _one(self, condition: ColumnElement[bool]) -> SigningKey | None:
        result = await self._session.execute(select(signing_keys).where(condition))
        row = result.mappings().one_or_none()
        return _key(row) if row is not None else None

    async def add(self, key: SigningKey) -> None:
        try:
            await self._session.execute(
                insert(signing_keys).values(
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
            )
        except IntegrityError as exc:
            raise StorageConflict(f"another {key.status.value} signing key exists") from exc

    async def retire(self, kid: str, at: datetime) -> bool:
        # Compare-and-set on the status: of instances promoting at once, PostgreSQL makes
        # the later ones wait for the first and then find the key no longer active.
        result = await self._session.execute(
            update(signing_keys)
            .where(signing_keys.c.kid == kid, signing_keys.c.status == KeyStatus.ACTIVE.value)
            .values(status=KeyStatus.RETIRED.value, active_marker=None, retired_at=at)
        )
        return count_rows(result) == 1

    async def activate(self, kid: str, at: datetime) -> bool:
        try:
            result = await self._session.execute(
                update(signing_keys)
                .where(signing_keys.c.kid == kid, signing_keys.c.status == KeyStatus.NEXT.value)
                .values(
                    status=KeyStatus.ACTIVE.value,
                    next_marker=None,
                    active_marker=_MARKER,
                    activated_at=at,
                )
            )
        except IntegrityError as exc:
            raise StorageConflict("another signing key is active") from exc
        return count_rows(result) == 1

    async def list_all(self) -> Sequence[SigningKey]:
        result = await self._session.execute(
            select(signing_keys).order_by(signing_keys.c.created_at.desc())
        )
        return [_key(row) for row in result.mappings()]
