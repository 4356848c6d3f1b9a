"""Use cases about the keys that sign access tokens."""

from __future__ import annotations

from datetime import datetime

from flotilla_auth.domain.signing_keys import KeyStatus, SigningKey
from flotilla_auth.service_layer.errors import StorageConflict
from flotilla_auth.service_layer.ports import KeyMaterial, UnitOfWorkFactory
from flotilla_kit.logs import get_logger

__all__ = ["ensure_active_signing_key", "published_signing_keys"]

_log = get_logger("flotilla.auth.keys")
_ATTEMPTS = 3


async def ensure_active_signing_key(
    *, uow: UnitOfWorkFactory, keys: KeyMaterial, now: datetime
) -> SigningKey:
    """The active key, created if there is none.

    N instances start at once against one database. The database admits one active key
    (a unique marker column), so when two create one at the same moment the second insert
    fails; that instance then reads and uses the winner's key.
    """
    async with uow(write=False) as reader:
        active = await reader.signing_keys.get_active()
    if active is not None:
        return active
    for _ in range(_ATTEMPTS):
        async with uow() as writer:
            active = await writer.signing_keys.get_active()
            if active is not None:
                return active
            key = keys.generate(now=now)
            try:
                await writer.signing_keys.add(key)
                await writer.commit()
            except StorageConflict:
                _log.info("another instance created the signing key first")
                continue
            _log.info("signing key created", kid=key.kid)
            return key
    raise StorageConflict("could not create or read the active signing key")


async def published_signing_keys(*, uow: UnitOfWorkFactory, now: datetime) -> list[SigningKey]:
    """The keys a verifier may meet in a token: active first, then recently retired."""
    async with uow(write=False) as reader:
        keys = await reader.signing_keys.list_all()
    published = [key for key in keys if key.is_published(now)]
    published.sort(
        key=lambda key: (key.status is not KeyStatus.ACTIVE, -key.created_at.timestamp())
    )
    return published
