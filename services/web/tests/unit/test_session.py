"""A session's lifetime rules, and the secrets its cookie and forms carry."""

from __future__ import annotations

import datetime as dt

import pytest

from flotilla_web.domain import Tokens, new_secret, same_secret, valid_secret

from .fakes import NOW, POLICY

MINUTE = dt.timedelta(minutes=1)


def test_a_session_is_over_after_its_idle_timeout() -> None:
    session = POLICY.new(
        user_id="u", username="a", roles=frozenset(), tokens=Tokens("a", "r", NOW), now=NOW
    )
    assert not POLICY.is_over(session, NOW + 29 * MINUTE)
    assert POLICY.is_over(session, NOW + 30 * MINUTE)
    used = session.seen(NOW + 29 * MINUTE)
    assert not POLICY.is_over(used, NOW + 58 * MINUTE)


def test_a_session_is_over_at_its_absolute_timeout_however_used() -> None:
    session = POLICY.new(
        user_id="u", username="a", roles=frozenset(), tokens=Tokens("a", "r", NOW), now=NOW
    )
    end = NOW + dt.timedelta(hours=12)
    assert session.expires_at == end
    assert not POLICY.is_over(session.seen(end - MINUTE), end - dt.timedelta(seconds=1))
    assert POLICY.is_over(session.seen(end - MINUTE), end)


@pytest.mark.parametrize(
    ("left", "refresh"),
    [(dt.timedelta(seconds=61), False), (dt.timedelta(seconds=60), False),
     (dt.timedelta(seconds=59), True), (dt.timedelta(0), True), (-MINUTE, True)],
)  # fmt: skip
def test_the_token_is_renewed_when_less_than_a_minute_is_left(
    left: dt.timedelta, refresh: bool
) -> None:
    session = POLICY.new(
        user_id="u", username="a", roles=frozenset(), tokens=Tokens("a", "r", NOW + left), now=NOW
    )
    assert POLICY.needs_refresh(session, NOW) is refresh


def test_the_last_use_is_written_at_most_once_a_minute() -> None:
    session = POLICY.new(
        user_id="u", username="a", roles=frozenset(), tokens=Tokens("a", "r", NOW), now=NOW
    )
    assert not POLICY.needs_touch(session, NOW + dt.timedelta(seconds=59))
    assert POLICY.needs_touch(session, NOW + MINUTE)


def test_roles_grant_their_permissions() -> None:
    session = POLICY.new(
        user_id="u",
        username="a",
        roles=frozenset({"support"}),
        tokens=Tokens("a", "r", NOW),
        now=NOW,
    )
    assert session.can("system:read")
    assert not session.can("system:operate")
    customer = POLICY.new(
        user_id="u",
        username="a",
        roles=frozenset({"customer"}),
        tokens=Tokens("a", "r", NOW),
        now=NOW,
    )
    assert customer.can("payments:transfer")
    assert not customer.can("system:read")


def test_secrets_are_random_and_of_one_shape() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(valid_secret(s) for s in secrets)
    assert {len(s) for s in secrets} == {43}
    assert (
        POLICY.new(
            user_id="u", username="a", roles=frozenset(), tokens=Tokens("a", "r", NOW), now=NOW
        ).csrf_token
        != POLICY.new(
            user_id="u", username="a", roles=frozenset(), tokens=Tokens("a", "r", NOW), now=NOW
        ).csrf_token
    )


@pytest.mark.parametrize(
    "value", [None, "", "short", "x" * 42, "x" * 44, "x" * 42 + "=", "x" * 42 + "/", "é" * 43]
)
def test_what_no_secret_looks_like_is_refused_before_any_lookup(value: str | None) -> None:
    assert not valid_secret(value)


def test_secrets_are_compared_whole() -> None:
    token = new_secret()
    assert same_secret(token, token)
    assert not same_secret(token, None)
    assert not same_secret(token, "")
    assert not same_secret(token, token[:-1])
    assert not same_secret(token, token + "x")
    assert not same_secret(token, token.upper() if token != token.upper() else token.lower())
    assert not same_secret(token, "é" * 43)  # not ASCII: no error, just no match
