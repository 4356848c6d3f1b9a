"""Idempotency by reference: an `Idempotency-Key` that names the resource its request created.

`flotilla_kit.idempotency.run_idempotently` stores a whole answer and replays it. A resource
whose answer changes after the request (an order while its saga runs, a transfer while two-phase
commit drives it) stores instead which resource the key created, and a replay answers from
that resource's current state. The key is remembered in the same transaction as the resource.

This module is the port a service layer declares its unit of work with (no SQL here, so the
service layer's imports stay free of the database): `ResourceKeys`, what it finds
(`KeyedResource`) and `DuplicateIdempotencyKey`. The SQL implementation is
`flotilla_kit.idempotency.SqlResourceKeys`; the tests' in-memory one is
`flotilla_kit.testing.InMemoryResourceKeys`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DuplicateIdempotencyKey", "KeyedResource", "ResourceKeys"]


class DuplicateIdempotencyKey(Exception):
    """Another request stored the same key first (the caller retries and replays it)."""


@dataclass(frozen=True, slots=True)
class KeyedResource:
    """What a stored key says: the fingerprint of the request that stored it (the same key
    with another request is refused) and the id of the resource that request created."""

    fingerprint: str
    resource_id: uuid.UUID


class ResourceKeys(Protocol):
    """The keys of one kind of resource, in the caller's transaction; keys are per `scope`
    (who asked, and for what)."""

    async def find(self, scope: str, key: str) -> KeyedResource | None: ...

    async def remember(
        self, scope: str, key: str, *, fingerprint: str, resource_id: uuid.UUID, at: dt.datetime
    ) -> None:
        """Raises DuplicateIdempotencyKey when another transaction stored it first."""
