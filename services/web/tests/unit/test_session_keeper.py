"""The session use cases against in-memory fakes: login, finding the session of a
cookie, renewing its token once (in this process and across instances), ending it."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace

import pytest

from flotilla_kit.clock import ManualClock
from flotilla_web.domain import GatewayUnavailable, NotLoggedIn, Tokens, new_secret
from flotilla_web.service_layer.ports import LoginRefused
from flotilla_web.service_layer.sessions import SessionKeeper

from .fakes import NOW, POLICY, TTL, FakeAuth, FakeTokens, FakeUow


async def _no_wait(seconds: float) -> None:
    return None


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def auth(clock: ManualClock) -> FakeAuth:
    return FakeAuth(clock=clock)


@pytest.fixture
def uow() -> FakeUow:
    return FakeUow()


@pytest.fixture
def keeper(uow: FakeUow, auth: FakeAuth, clock: ManualClock) -> SessionKeeper:
    return SessionKeeper(
        uow=uow, auth=auth, tokens=FakeTokens(auth), policy=POLICY, clock=clock, sleep=clock.sleep
    )


async def test_login_stores_a_session_under_a_fresh_id(keeper: SessionKeeper, uow: FakeUow) -> None:
    first, session = await keeper.log_in(username="alice", password="right")
    second, _ = await keeper.log_in(username="alice", password="right")
    assert first != second
    assert set(uow.store) == {first, second}
    assert (session.user_id, session.username) == ("alice", "alice")
    assert session.roles == {"customer"}
    assert session.tokens.access_expires_at == NOW + TTL
    assert await keeper.current(first) == session


async def test_a_refused_login_stores_nothing(keeper: SessionKeeper, uow: FakeUow) -> None:
    with pytest.raises(LoginRefused):
        await keeper.log_in(username="alice", password="wrong")
    assert uow.store == {}


@pytest.mark.parametrize("cookie", [None, "", "nope", new_secret()])
async def test_no_session_for_an_unknown_or_malformed_cookie(
    keeper: SessionKeeper, cookie: str | None
) -> None:
    await keeper.log_in(username="alice", password="right")
    with pytest.raises(NotLoggedIn):
        await keeper.current(cookie)


async def test_a_session_that_is_over_is_ended_even_if_auth_is_down(
    keeper: SessionKeeper, uow: FakeUow, auth: FakeAuth, clock: ManualClock
) -> None:
    cookie, session = await keeper.log_in(username="alice", password="right")
    clock.advance(POLICY.idle_timeout.total_seconds())
    auth.down = True
    with pytest.raises(NotLoggedIn):
        await keeper.current(cookie)
    assert uow.store == {}
    assert auth.logouts == [session.tokens.refresh_token]  # it was asked, at least


async def test_use_is_recorded_at_most_once_a_minute(
    keeper: SessionKeeper, uow: FakeUow, clock: ManualClock
) -> None:
    cookie, _ = await keeper.log_in(username="alice", password="right")
    clock.advance(30)
    await keeper.current(cookie)
    assert uow.store[cookie].session.last_seen_at == NOW
    clock.advance(30)
    assert (await keeper.current(cookie)).last_seen_at == NOW + dt.timedelta(minutes=1)
    assert uow.store[cookie].session.last_seen_at == NOW + dt.timedelta(minutes=1)


async def test_the_token_is_renewed_once_for_requests_arriving_together(
    keeper: SessionKeeper, auth: FakeAuth, clock: ManualClock
) -> None:
    cookie, session = await keeper.log_in(username="alice", password="right")
    clock.advance(TTL.total_seconds())  # expired
    auth.gate = asyncio.Event()
    requests = [asyncio.create_task(keeper.current(cookie)) for _ in range(5)]
    await asyncio.wait_for(auth.refreshing.wait(), 10)  # one reached auth; others wait
    auth.gate.set()
    found = await asyncio.gather(*requests)
    assert auth.refreshes == [session.tokens.refresh_token]
    assert {s.tokens.access_token for s in found} == {"at:alice:2"}


async def test_while_another_instance_renews_a_still_good_token_is_used(
    keeper: SessionKeeper, uow: FakeUow, auth: FakeAuth, clock: ManualClock
) -> None:
    cookie, session = await keeper.log_in(username="alice", password="right")
    clock.advance(TTL.total_seconds() - 30)  # 30 s left
    uow.store[cookie] = replace(uow.store[cookie], claimed_until=clock() + dt.timedelta(seconds=10))
    found = await keeper.current(cookie)
    assert found.tokens == session.tokens
    assert auth.refreshes == []


async def test_with_an_expired_token_it_waits_for_the_other_instance(
    keeper: SessionKeeper, uow: FakeUow, auth: FakeAuth, clock: ManualClock
) -> None:
    cookie, _ = await keeper.log_in(username="alice", password="right")
    clock.advance(TTL.total_seconds())
    uow.store[cookie] = replace(uow.store[cookie], claimed_until=clock() + dt.timedelta(seconds=10))
    waiting = asyncio.create_task(keeper.current(cookie))
    await clock.next_sleep()
    # The other instance finishes its refresh.
    renewed = Tokens("at:alice:other", "rt:alice:other", clock() + TTL)
    uow.store[cookie] = replace(
        uow.store[cookie],
        session=uow.store[cookie].session.with_tokens(renewed, frozenset({"customer"})),
        claimed_until=None,
    )
    clock.advance(0.05)
    assert (await waiting).tokens == renewed
    assert auth.refreshes == []


async def test_it_waits_no_longer_than_a_claim_lasts(
    uow: FakeUow, auth: FakeAuth, clock: ManualClock
) -> None:
    keeper = SessionKeeper(
        uow=uow, auth=auth, tokens=FakeTokens(auth), policy=POLICY, clock=clock, sleep=_no_wait
    )
    cookie, _ = await keeper.log_in(username="alice", password="right")
    clock.advance(TTL.total_seconds())
    uow.store[cookie] = replace(uow.store[cookie], claimed_until=clock() + dt.timedelta(seconds=10))
    with pytest.raises(GatewayUnavailable):
        await keeper.current(cookie)


async def test_a_refused_refresh_ends_the_session(
    keeper: SessionKeeper, uow: FakeUow, auth: FakeAuth, clock: ManualClock
) -> None:
    cookie, session = await keeper.log_in(username="alice", password="right")
    auth.spent.add(session.tokens.refresh_token)  # spent elsewhere: auth revoked the family
    clock.advance(TTL.total_seconds())
    with pytest.raises(NotLoggedIn):
        await keeper.current(cookie)
    assert uow.store == {}


async def test_an_unanswered_refresh_keeps_a_good_token_and_fails_an_expired_one(
    keeper: SessionKeeper, uow: FakeUow, auth: FakeAuth, clock: ManualClock
) -> None:
    cookie, session = await keeper.log_in(username="alice", password="right")
    auth.down = True
    clock.advance(TTL.total_seconds() - 30)
    assert (await keeper.current(cookie)).tokens == session.tokens  # 30 s left: good enough
    clock.advance(30)
    with pytest.raises(GatewayUnavailable):
        await keeper.current(cookie)  # expired, and auth still down
    assert len(auth.refreshes) == 2
    assert cookie in uow.store  # the session is not over: auth may come back
    auth.down = False
    clock.advance(10)  # the last claim has lapsed
    assert (await keeper.current(cookie)).tokens.access_token == "at:alice:2"


async def test_logout_revokes_and_deletes(
    keeper: SessionKeeper, uow: FakeUow, auth: FakeAuth
) -> None:
    cookie, session = await keeper.log_in(username="alice", password="right")
    other, _ = await keeper.log_in(username="bob", password="right")
    await keeper.log_out(cookie)
    await keeper.log_out(new_secret())  # unknown: nothing
    await keeper.log_out("garbage")
    assert auth.logouts == [session.tokens.refresh_token]
    assert set(uow.store) == {other}


async def test_sweeping_deletes_what_is_over(
    keeper: SessionKeeper, uow: FakeUow, clock: ManualClock
) -> None:
    await keeper.log_in(username="alice", password="right")
    clock.advance(POLICY.idle_timeout.total_seconds() - 1)
    new, _ = await keeper.log_in(username="bob", password="right")
    clock.advance(1)
    assert await keeper.sweep() == 1
    assert set(uow.store) == {new}
