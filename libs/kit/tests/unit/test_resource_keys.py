"""The in-memory Idempotency-Keys of the services' fakes (`testing.InMemoryResourceKeys`)
keep the SQL one's rules: a key stored twice is `DuplicateIdempotencyKey`, a key of a unit
of work that does not commit is gone, and `before_remember` slips one competing request in
just before the next key is stored."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from flotilla_kit.resource_keys import DuplicateIdempotencyKey, KeyedResource, ResourceKeys
from flotilla_kit.testing import InMemoryResourceKeys, InMemoryUnitOfWork

AT = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@dataclass
class Store:
    keys: dict[tuple[str, str], KeyedResource] = field(default_factory=dict)
    before_remember: Callable[[], None] | None = None


class Uow(InMemoryUnitOfWork):
    def __init__(self, store: Store) -> None:
        super().__init__(write=True)
        self.idempotency: ResourceKeys = InMemoryResourceKeys(store, self.undo)


async def test_a_committed_key_is_found_in_its_scope_only() -> None:
    store, order = Store(), uuid.uuid4()
    async with Uow(store) as uow:
        await uow.idempotency.remember("alice:o", "k", fingerprint="f", resource_id=order, at=AT)
        await uow.commit()
    async with Uow(store) as uow:
        assert await uow.idempotency.find("alice:o", "k") == KeyedResource("f", order)
        assert await uow.idempotency.find("bob:o", "k") is None


async def test_a_key_stored_twice_is_a_duplicate_and_the_first_one_stays() -> None:
    store, first = Store(), uuid.uuid4()
    async with Uow(store) as uow:
        await uow.idempotency.remember("s", "k", fingerprint="f1", resource_id=first, at=AT)
        await uow.commit()
    with pytest.raises(DuplicateIdempotencyKey, match=r"^k$"):
        async with Uow(store) as uow:
            await uow.idempotency.remember(
                "s", "k", fingerprint="f2", resource_id=uuid.uuid4(), at=AT
            )
    assert store.keys == {("s", "k"): KeyedResource("f1", first)}


async def test_the_key_of_a_unit_of_work_that_does_not_commit_is_gone() -> None:
    store = Store()
    async with Uow(store) as uow:
        await uow.idempotency.remember("s", "k", fingerprint="f", resource_id=uuid.uuid4(), at=AT)
    assert store.keys == {}


async def test_before_remember_runs_once_just_before_the_next_key_is_stored() -> None:
    store, theirs, ours = Store(), uuid.uuid4(), uuid.uuid4()
    calls: list[str] = []

    def a_competing_request_commits_first() -> None:
        calls.append("hook")
        store.keys[("s", "k")] = KeyedResource("theirs", theirs)

    store.before_remember = a_competing_request_commits_first
    with pytest.raises(DuplicateIdempotencyKey):
        async with Uow(store) as uow:
            await uow.idempotency.remember("s", "k", fingerprint="f", resource_id=ours, at=AT)
    assert calls == ["hook"]
    assert store.keys == {("s", "k"): KeyedResource("theirs", theirs)}
    # Spent: the next request stores its key without the hook.
    async with Uow(store) as uow:
        await uow.idempotency.remember("s", "k2", fingerprint="f", resource_id=ours, at=AT)
        await uow.commit()
    assert calls == ["hook"]
