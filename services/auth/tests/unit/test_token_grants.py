"""The password and refresh grants and logout, against in-memory fakes."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from flotilla_auth.domain.login_protection import account_key, ip_key
from flotilla_auth.domain.refresh_tokens import RefreshToken, hash_refresh_token
from flotilla_auth.service_layer.errors import InvalidGrant, InvalidScope, TooManyLoginAttempts
from flotilla_auth.service_layer.tokens import (
    TokenGrant,
    grant_password,
    grant_refresh_token,
    revoke_refresh_family,
)

from .fakes import (
    PASSWORD,
    POLICY,
    PROTECTION,
    T0,
    FakePasswordHasher,
    FakeSigner,
    FakeStore,
    FakeUowFactory,
    later,
)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def passwords() -> FakePasswordHasher:
    return FakePasswordHasher()


async def login(
    store: FakeStore,
    passwords: FakePasswordHasher,
    username: str = "alice",
    password: str = PASSWORD,
    scope: str | None = None,
    *,
    seconds: float = 0,
    ip: str = "192.0.2.1",
) -> TokenGrant:
    return await grant_password(
        uow=FakeUowFactory(store),
        passwords=passwords,
        signer=FakeSigner(),
        policy=POLICY,
        protection=PROTECTION,
        now=later(seconds),
        username=username,
        password=password,
        client_ip=ip,
        scope=scope,
    )


async def refresh(
    store: FakeStore, token: str, *, seconds: float = 60, scope: str | None = None
) -> TokenGrant:
    return await grant_refresh_token(
        uow=FakeUowFactory(store),
        signer=FakeSigner(),
        policy=POLICY,
        now=later(seconds),
        refresh_token=token,
        scope=scope,
    )


def claims(grant: TokenGrant) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(grant.access_token)
    return decoded


def stored(store: FakeStore, token: str) -> RefreshToken:
    return next(t for t in store.tokens.values() if t.token_hash == hash_refresh_token(token))


# -- password grant -------------------------------------------------------------------------
async def test_password_grant_issues_access_and_refresh_token(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    user = store.add_user(roles=("customer",))

    grant = await login(store, passwords, username="  Alice ")

    assert claims(grant)["sub"] == user.id
    assert claims(grant)["roles"] == ["customer"]
    # The session id is the refresh-token family: what logout and reuse detection revoke.
    assert claims(grant)["sid"] == stored(store, grant.refresh_token).family_id
    assert grant.expires_in == POLICY.access_token_ttl_s
    assert grant.token_type == "Bearer"
    record = stored(store, grant.refresh_token)
    assert record.user_id == user.id
    assert record.expires_at == later(POLICY.refresh_token_ttl_s)
    # Only the hash is kept.
    assert grant.refresh_token not in {t.token_hash for t in store.tokens.values()}


async def test_each_login_starts_a_new_family(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    store.add_user()
    first = await login(store, passwords)
    second = await login(store, passwords)
    assert (
        stored(store, first.refresh_token).family_id
        != stored(store, second.refresh_token).family_id
    )


@pytest.mark.parametrize(
    ("username", "password", "state", "reason"),
    [
        ("alice", "wrong password", "", "wrong_password"),
        ("nobody", "correct horse", "", "unknown_user"),
        ("alice", "correct horse", "disabled", "user_disabled"),
        ("alice", "correct horse", "locked", "user_locked"),
    ],
    ids=["wrong-password", "unknown-user", "disabled-user", "locked-user"],
)
async def test_refused_logins_look_alike_and_only_leave_their_trace(
    store: FakeStore,
    passwords: FakePasswordHasher,
    username: str,
    password: str,
    state: str,
    reason: str,
) -> None:
    user = store.add_user(disabled=state == "disabled")
    if state == "locked":
        store.users[user.id] = replace(user, locked=True)
    before = store.snapshot()

    with pytest.raises(InvalidGrant) as refused:
        await login(store, passwords, username=username, password=password)

    assert str(refused.value) == str(InvalidGrant())
    assert store.snapshot() == before  # no user, session or key changed
    # Every path checks one password, so timing does not tell them apart.
    assert passwords.checks + passwords.dummy_checks == 1
    # What a refusal writes: the failure counters and one audit event, nothing else.
    assert store.commits == 1
    assert sorted(store.throttles) == sorted([account_key(username), ip_key("192.0.2.1")])
    [event] = store.audit
    assert (event.action, event.actor, event.outcome) == ("login.failure", username, "failure")
    assert event.details == {"ip": "192.0.2.1", "reason": reason}
    assert password not in json.dumps(event.details)


async def test_five_failures_lock_the_account_even_for_the_right_password(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    store.add_user()
    for attempt in range(5):
        with pytest.raises(InvalidGrant):
            await login(store, passwords, password="wrong password", seconds=attempt)
    assert store.actions()[-1] == "login.lockout"
    checks = passwords.checks

    with pytest.raises(InvalidGrant):
        await login(store, passwords, seconds=10)  # the right password, during the lockout

    assert passwords.checks == checks + 1  # the password was still checked (same cost)
    assert store.audit[-1].details["reason"] == "locked_out"
    assert store.tokens == {}
    # The lockout is 60 s from the fifth failure; after it the right password works and
    # resets the count.
    await login(store, passwords, seconds=4 + 60)
    assert account_key("alice") not in store.throttles


async def test_too_many_failures_from_one_address_are_throttled_before_any_check(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    for attempt in range(PROTECTION.ip_max_failures):
        with pytest.raises(InvalidGrant):
            await login(store, passwords, username=f"user{attempt}", seconds=attempt)
    checks, commits = passwords.dummy_checks, store.commits

    with pytest.raises(TooManyLoginAttempts) as throttled:
        await login(store, passwords, seconds=30)

    assert throttled.value.retry_after_s == PROTECTION.ip_window_s - 30
    assert (passwords.dummy_checks, store.commits) == (checks, commits)
    store.add_user()
    await login(store, passwords, ip="192.0.2.2", seconds=30)  # another address is not
    await login(store, passwords, seconds=PROTECTION.ip_window_s)  # nor this one, later


async def test_unknown_user_still_checks_a_password(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    with pytest.raises(InvalidGrant):
        await login(store, passwords, username="nobody")
    assert passwords.dummy_checks == 1


async def test_login_upgrades_an_outdated_hash(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    user = store.add_user()
    store.users[user.id] = replace(user, password_hash="old$correct horse")
    await login(store, passwords)
    assert store.users[user.id].password_hash == "fake$correct horse"


async def test_scope_is_narrowed_to_what_the_roles_grant(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    store.add_user(roles=("customer",))

    grant = await login(store, passwords, scope="accounts:read users:admin accounts:read")

    assert grant.scope == "accounts:read"
    assert claims(grant)["scope"] == "accounts:read"


async def test_malformed_scope_is_refused(store: FakeStore, passwords: FakePasswordHasher) -> None:
    store.add_user()
    with pytest.raises(InvalidScope):
        await login(store, passwords, scope='accounts:read "quoted"')
    assert store.commits == 0


# -- refresh grant ----------------------------------------------------------------------------
async def test_refresh_spends_the_token_and_issues_its_successor(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    store.add_user()
    first = await login(store, passwords)

    second = await refresh(store, first.refresh_token)

    old, new = stored(store, first.refresh_token), stored(store, second.refresh_token)
    assert old.used_at == later(60)
    assert old.revoked_at is None
    assert new.family_id == old.family_id
    assert new.used_at is None
    assert new.expires_at == later(60 + POLICY.refresh_token_ttl_s)
    assert second.refresh_token != first.refresh_token


async def test_reusing_a_spent_token_revokes_the_whole_family(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    store.add_user()
    first = await login(store, passwords)
    other_session = await login(store, passwords)
    second = await refresh(store, first.refresh_token)

    with pytest.raises(InvalidGrant):
        await refresh(store, first.refresh_token, seconds=120)

    family = stored(store, first.refresh_token).family_id
    assert all(t.revoked_at == later(120) for t in store.tokens.values() if t.family_id == family)
    reuse = store.audit[-1]
    assert (reuse.action, reuse.target, reuse.outcome) == (
        "refresh_token.reuse",
        family,
        "failure",
    )
    with pytest.raises(InvalidGrant):
        await refresh(store, second.refresh_token, seconds=180)
    # Another login's family is untouched.
    assert stored(store, other_session.refresh_token).revoked_at is None


async def test_losing_a_race_for_a_token_counts_as_reuse(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    store.add_user()
    first = await login(store, passwords)
    store.lose_next_spend = True

    with pytest.raises(InvalidGrant):
        await refresh(store, first.refresh_token)

    assert stored(store, first.refresh_token).revoked_at == later(60)
    assert len(store.tokens) == 1


@pytest.mark.parametrize(
    "case",
    ["expired", "revoked", "unknown", "disabled-user", "deleted-user", "wider-scope", "too-long"],
)
async def test_refused_refresh_writes_nothing(
    store: FakeStore, passwords: FakePasswordHasher, case: str
) -> None:
    user = store.add_user(roles=("customer",))
    first = await login(store, passwords, scope="accounts:read")
    token, seconds, scope = first.refresh_token, 60.0, None
    if case == "expired":
        seconds = POLICY.refresh_token_ttl_s
    elif case == "revoked":
        await revoke_refresh_family(uow=FakeUowFactory(store), now=T0, refresh_token=token)
    elif case == "unknown":
        token = "not-a-token-we-issued"
    elif case == "disabled-user":
        store.users[user.id] = replace(user, disabled=True)
    elif case == "deleted-user":
        del store.users[user.id]
    elif case == "wider-scope":
        scope = "accounts:read payments:transfer"
    elif case == "too-long":
        token = "x" * 10_000
    before, commits = store.snapshot(), store.commits

    with pytest.raises(InvalidGrant if case != "wider-scope" else InvalidScope):
        await refresh(store, token, seconds=seconds, scope=scope)

    assert store.snapshot() == before
    assert store.commits == commits


async def test_refresh_keeps_the_scope_and_may_narrow_it(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    store.add_user(roles=("customer",))
    first = await login(store, passwords, scope="accounts:read payments:transfer")

    narrowed = await refresh(store, first.refresh_token, scope="accounts:read")
    kept = await refresh(store, narrowed.refresh_token, seconds=120)

    assert narrowed.scope == "accounts:read"
    # The family keeps what the login granted; a narrowed access token does not shrink it.
    assert kept.scope == "accounts:read payments:transfer"


async def test_refresh_uses_the_roles_the_user_has_now(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    user = store.add_user(roles=("customer", "support"))
    first = await login(store, passwords, scope="users:read")
    store.users[user.id] = replace(user, roles=("customer",))

    second = await refresh(store, first.refresh_token)

    assert claims(second)["roles"] == ["customer"]
    assert second.scope == ""


# -- logout ---------------------------------------------------------------------------------
async def test_logout_revokes_the_family_and_ignores_unknown_tokens(
    store: FakeStore, passwords: FakePasswordHasher
) -> None:
    store.add_user()
    first = await login(store, passwords)
    second = await refresh(store, first.refresh_token)

    await revoke_refresh_family(uow=FakeUowFactory(store), now=later(90), refresh_token="nope")
    assert store.commits == 2

    await revoke_refresh_family(
        uow=FakeUowFactory(store), now=later(90), refresh_token=first.refresh_token
    )
    assert {t.revoked_at for t in store.tokens.values()} == {later(90)}
    assert store.actions()[-1] == "logout"
    with pytest.raises(InvalidGrant):
        await refresh(store, second.refresh_token, seconds=100)
