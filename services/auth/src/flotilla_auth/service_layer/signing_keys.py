"""Use cases about the keys that sign access tokens: the first key, staging a successor,
promoting it once verifiers have had time to fetch it, and what the JWKS publishes.

Every instance runs the same timer against one database, so each step is safe to race:
the database admits one active and one staged key (unique markers), and a promotion is a
compare-and-set on the old key's state that only one instance can win.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from flotilla_auth.domain.audit_events import AuditAction
from flotilla_auth.domain.signing_keys import KeySchedule, KeyStatus, SigningKey
from flotilla_auth.service_layer.errors import StorageConflict
from flotilla_auth.service_layer.ports import AuthUnitOfWork, KeyMaterial, UnitOfWorkFactory
from flotilla_kit.logs import get_logger

__all__ = [
    "KeyRing",
    "ensure_active_signing_key",
    "key_ring",
    "promote_staged_key",
    "published_signing_keys",
    "rotate_signing_keys",
    "stage_signing_key",
]

_log = get_logger("flotilla.auth.keys")
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The key to sign with, and the keys to publish (active, staged, recently retired)."""

    active: SigningKey
    published: list[SigningKey]


async def _key_event(
    writer: AuthUnitOfWork, action: AuditAction, key: SigningKey, *, actor: str, at: datetime
) -> None:
    await writer.audit.record(actor=actor, action=action, at=at, target=key.kid)


async def ensure_active_signing_key(
    *, uow: UnitOfWorkFactory, keys: KeyMaterial, now: datetime, actor: str = "system"
) -> SigningKey:
    """The active key, created if there is none (a fresh database).

    N instances start at once against one database. The database admits one active key
    (a unique marker column), so when two create one at the same moment the second insert
    fails; that instance then reads and uses the winner's key. The very first key signs at
    once: no verifier can hold an older key set it would be missing from.
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
            key = keys.generate(now=now).activated(now)
            try:
                await writer.signing_keys.add(key)
                await _key_event(writer, AuditAction.KEY_ACTIVATED, key, actor=actor, at=now)
                await writer.commit()
            except StorageConflict:
                _log.info("another instance created the signing key first")
                continue
            _log.info("signing key created", kid=key.kid)
            return key
    raise StorageConflict("could not create or read the active signing key")


async def stage_signing_key(
    *, uow: UnitOfWorkFactory, keys: KeyMaterial, now: datetime, actor: str = "system"
) -> SigningKey:
    """The staged (`next`) key, made now if there is none. It is published at once and
    signs only after the publish delay."""
    for _ in range(_ATTEMPTS):
        async with uow() as writer:
            staged = await writer.signing_keys.get_next()
            if staged is not None:
                return staged
            key = keys.generate(now=now)
            try:
                await writer.signing_keys.add(key)
                await _key_event(writer, AuditAction.KEY_STAGED, key, actor=actor, at=now)
                await writer.commit()
            except StorageConflict:
                _log.info("another instance staged a signing key first")
                continue
        _log.info("signing key staged", kid=key.kid)
        return key
    raise StorageConflict("could not stage or read the next signing key")


def _due(staged: SigningKey | None, now: datetime, schedule: KeySchedule | None) -> bool:
    if staged is None:
        return False
    return schedule is None or staged.is_due_for_activation(now, schedule)


async def promote_staged_key(
    *,
    uow: UnitOfWorkFactory,
    now: datetime,
    schedule: KeySchedule | None,
    actor: str = "system",
) -> SigningKey | None:
    """Make the staged key active and retire the active one, in one transaction.

    With a schedule, only once the staged key has been published for the publish delay;
    without one (an operator's `rotate-keys --now`), at once. Returns the key this call
    activated, or None when there was nothing due or another instance won the race.
    """
    # Look before taking the write lock: on SQLite every tick of every instance would
    # otherwise queue behind (and in front of) logins for nothing.
    async with uow(write=False) as reader:
        if not _due(await reader.signing_keys.get_next(), now, schedule):
            return None
    async with uow() as writer:
        # Again inside the transaction: another instance may have promoted it and staged
        # a successor meanwhile.
        staged = await writer.signing_keys.get_next()
        if staged is None or not _due(staged, now, schedule):
            return None
        active = await writer.signing_keys.get_active()
        # Compare-and-set, old key first (it frees the active marker): a concurrent
        # promoter blocks on the same row and then finds it no longer active.
        if active is not None and not await writer.signing_keys.retire(active.kid, now):
            return None
        if not await writer.signing_keys.activate(staged.kid, now):
            return None
        if active is not None:
            await _key_event(writer, AuditAction.KEY_RETIRED, active, actor=actor, at=now)
        await _key_event(writer, AuditAction.KEY_ACTIVATED, staged, actor=actor, at=now)
        await writer.commit()
    _log.info("signing key activated", kid=staged.kid, retired=active.kid if active else None)
    return staged.activated(now)


async def published_signing_keys(
    *, uow: UnitOfWorkFactory, now: datetime, schedule: KeySchedule
) -> list[SigningKey]:
    """The keys a verifier may meet in a token: active first, then staged, then recently
    retired ones (newest first)."""
    async with uow(write=False) as reader:
        keys = await reader.signing_keys.list_all()
    return _published(keys, now, schedule)


_ORDER = {KeyStatus.ACTIVE: 0, KeyStatus.NEXT: 1, KeyStatus.RETIRED: 2}


def _published(
    keys: Sequence[SigningKey], now: datetime, schedule: KeySchedule
) -> list[SigningKey]:
    published = [key for key in keys if key.is_published(now, schedule)]
    published.sort(key=lambda key: (_ORDER[key.status], -key.created_at.timestamp()))
    return published


async def key_ring(*, uow: UnitOfWorkFactory, now: datetime, schedule: KeySchedule) -> KeyRing:
    async with uow(write=False) as reader:
        keys = list(await reader.signing_keys.list_all())
    active = next((key for key in keys if key.status is KeyStatus.ACTIVE), None)
    if active is None:
        raise StorageConflict("no active signing key")
    return KeyRing(active=active, published=_published(keys, now, schedule))


async def rotate_signing_keys(
    *,
    uow: UnitOfWorkFactory,
    keys: KeyMaterial,
    now: datetime,
    schedule: KeySchedule,
    actor: str = "system",
) -> KeyRing:
    """One tick of the rotation timer: promote a staged key that is due, stage a successor
    for an active key that is old enough, and say what to sign with and publish now."""
    await promote_staged_key(uow=uow, now=now, schedule=schedule, actor=actor)
    ring = await key_ring(uow=uow, now=now, schedule=schedule)
    if ring.active.needs_successor(now, schedule) and not any(
        key.status is KeyStatus.NEXT for key in ring.published
    ):
        await stage_signing_key(uow=uow, keys=keys, now=now, actor=actor)
        ring = await key_ring(uow=uow, now=now, schedule=schedule)
    return ring
