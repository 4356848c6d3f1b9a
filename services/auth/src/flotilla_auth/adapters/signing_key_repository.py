"""Signing keys in SQL (private halves sealed)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_auth.adapters.tables import signing_keys
from flotilla_auth.domain.signing_keys import KeyStatus, SigningKey
from flotilla_auth.service_layer.errors import StorageConflict

__all__ = ["SqlSigningKeyRepository"]

_ACTIVE_MARKER = 1


def _key(row: RowMapping) -> SigningKey:
    return SigningKey(
        kid=row["kid"],
        algorithm=row["algorithm"],
        public_jwk=dict(row["public_jwk"]),
        sealed_private_key=row["private_key_pem"],
        created_at=row["created_at"],
        status=KeyStatus(row["status"]),
        retired_at=row["retired_at"],
    )


class SqlSigningKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get_active(self) -> SigningKey | None:
        result = await self._session.execute(
            select(signing_keys).where(signing_keys.c.active_marker == _ACTIVE_MARKER)
        )
        row = result.mappings().one_or_none()
        return _key(row) if row is not None else None

    async def add(self, key: SigningKey) -> None:
        active = key.status is KeyStatus.ACTIVE
        try:
            await self._session.execute(
                insert(signing_keys).values(
                    kid=key.kid,
                    algorithm=key.algorithm,
                    public_jwk=dict(key.public_jwk),
                    private_key_pem=key.sealed_private_key,
                    created_at=key.created_at,
                    status=key.status.value,
                    retired_at=key.retired_at,
                    active_marker=_ACTIVE_MARKER if active else None,
                )
            )
        except IntegrityError as exc:
            raise StorageConflict("another active signing key exists") from exc

    async def list_all(self) -> Sequence[SigningKey]:
        result = await self._session.execute(
            select(signing_keys).order_by(signing_keys.c.created_at.desc())
        )
        return [_key(row) for row in result.mappings()]
