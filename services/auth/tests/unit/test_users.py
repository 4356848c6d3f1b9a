"""Seeding users: create or update to exactly what is declared, all or nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flotilla_auth.domain.refresh_tokens import RefreshToken
from flotilla_auth.domain.users import User
from flotilla_auth.service_layer.errors import InvalidUserData, UnknownSubject
from flotilla_auth.service_layer.users import UserSpec, ensure_users, get_user

from .fakes import PASSWORD_POLICY, T0, FakePasswordHasher, FakeStore, FakeUowFactory


async def ensure(
    store: FakeStore, *specs: UserSpec, hasher: FakePasswordHasher | None = None
) -> list[User]:
    return await ensure_users(
        uow=FakeUowFactory(store),
        passwords=hasher or FakePasswordHasher(),
        policy=PASSWORD_POLICY,
        now=T0,
        users=list(specs),
    )


async def test_creates_users_with_normalised_names_and_sorted_roles() -> None:
    store = FakeStore()

    [user] = await ensure(store, UserSpec(" Alice ", "tangerine-otter-1", ("support", "customer")))

    assert user.username == "alice"
    assert user.roles == ("customer", "support")
    assert store.users[user.id] == user
    assert user.password_hash == "fake$tangerine-otter-1"
    [event] = store.audit
    assert (event.action, event.actor, event.target) == ("user.created", "seed", user.id)


async def test_second_run_changes_nothing() -> None:
    store = FakeStore()
    hasher = FakePasswordHasher()
    spec = UserSpec("alice", "tangerine-otter-1", ("customer",))
    [first] = await ensure(store, spec, hasher=hasher)
    before = store.snapshot()

    [second] = await ensure(store, spec, hasher=hasher)

    assert second == first
    assert store.snapshot() == before
    assert hasher.hashes == 1  # the matching password was not hashed again
    assert store.actions() == ["user.created"]  # nothing changed, nothing recorded


async def test_update_sets_password_roles_and_state_and_ends_sessions() -> None:
    store = FakeStore()
    [user] = await ensure(store, UserSpec("alice", "tangerine-otter-1", ("customer",)))
    _, session = RefreshToken.issue(user_id=user.id, scope=(), now=T0, ttl_s=60)
    store.tokens[session.id] = session

    [updated] = await ensure(
        store, UserSpec("ALICE", "tangerine-otter-2", ("admin",), disabled=True)
    )

    assert updated.id == user.id
    assert updated.password_hash == "fake$tangerine-otter-2"
    assert updated.roles == ("admin",)
    assert updated.disabled
    assert store.tokens[session.id].revoked_at == T0
    assert len(store.users) == 1
    assert store.audit[-1].action == "user.updated"
    assert store.audit[-1].details["changed"] == ["password", "roles", "disabled"]


async def test_role_change_alone_keeps_sessions() -> None:
    store = FakeStore()
    [user] = await ensure(store, UserSpec("alice", "tangerine-otter-1", ("customer",)))
    _, session = RefreshToken.issue(user_id=user.id, scope=(), now=T0, ttl_s=60)
    store.tokens[session.id] = session

    await ensure(store, UserSpec("alice", "tangerine-otter-1", ("support",)))

    assert store.tokens[session.id].revoked_at is None


@pytest.mark.parametrize(
    "spec",
    [
        UserSpec("alice", "tangerine-otter-1", ("customer", "superuser")),
        UserSpec("al ice", "tangerine-otter-1", ("customer",)),
        UserSpec("   ", "tangerine-otter-1", ("customer",)),
        UserSpec("a" * 65, "tangerine-otter-1", ("customer",)),
        UserSpec("alice", "short", ("customer",)),
        UserSpec("alice", "eleven-char", ("customer",)),
        UserSpec("alice", "tangerine-otter-1", ("service:payments",)),
        UserSpec("alice", "Password1234", ("customer",)),
        UserSpec("alice", "xx-ALICE-tangerine", ("customer",)),
    ],
    ids=[
        "unknown-role",
        "space-in-name",
        "blank-name",
        "long-name",
        "short-password",
        "eleven-characters",
        "service-role",
        "common-password",
        "contains-username",
    ],
)
async def test_invalid_declarations_write_nothing(spec: UserSpec) -> None:
    store = FakeStore()
    with pytest.raises(InvalidUserData):
        await ensure(store, UserSpec("bob", "tangerine-otter-1", ("customer",)), spec)
    assert store.users == {}


async def test_a_name_declared_twice_is_refused() -> None:
    store = FakeStore()
    with pytest.raises(InvalidUserData, match="more than once"):
        await ensure(
            store,
            UserSpec("alice", "tangerine-otter-1", ("customer",)),
            UserSpec("Alice", "tangerine-otter-2", ("admin",)),
        )
    assert store.users == {}


async def test_get_user_refuses_unknown_disabled_locked_subjects_and_revoked_sessions() -> None:
    store = FakeStore()
    active = store.add_user("alice")
    disabled = store.add_user("bob", disabled=True)
    locked = store.add_user("carol")
    store.users[locked.id] = replace(locked, locked=True)
    _, session = RefreshToken.issue(user_id=active.id, scope=(), now=T0, ttl_s=60)
    store.tokens[session.id] = session.revoked(T0)
    uow = FakeUowFactory(store)

    assert await get_user(uow=uow, user_id=active.id) == active
    assert await get_user(uow=uow, user_id=active.id, session_id="another") == active
    for user_id in (disabled.id, locked.id, "missing"):
        with pytest.raises(UnknownSubject):
            await get_user(uow=uow, user_id=user_id)
    with pytest.raises(UnknownSubject):
        await get_user(uow=uow, user_id=active.id, session_id=session.family_id)


async def test_the_seed_leaves_an_administrators_lock_alone() -> None:
    store = FakeStore()
    [user] = await ensure(store, UserSpec("alice", "tangerine-otter-1", ("customer",)))
    store.users[user.id] = replace(user, locked=True)

    [again] = await ensure(store, UserSpec("alice", "tangerine-otter-1", ("customer",)))

    assert again.locked


async def test_a_declared_id_is_used_on_creation_and_never_changes_an_existing_user() -> None:
    store = FakeStore()
    fixed = "5f0c2a8e-6a53-5b8e-9d47-0d6f8a0c1b2e"
    [created] = await ensure(store, UserSpec("alice", "tangerine-otter-1", ("customer",), id=fixed))
    assert created.id == fixed

    other = "0b6f4a39-2c1d-5e8f-a7b6-3c2d1e0f9a8b"
    [again] = await ensure(store, UserSpec("alice", "tangerine-otter-1", ("customer",), id=other))
    assert again.id == fixed
