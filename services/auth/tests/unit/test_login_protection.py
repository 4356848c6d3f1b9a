"""The failed-login counters' rules: threshold, window, doubling lockouts, per-IP limit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flotilla_auth.domain.login_protection import FailureCounter, LoginProtection, account_key

from .fakes import T0, later

RULES = LoginProtection()
KEY = account_key("alice")


def fail(times: int, *, every_s: float = 1, start: float = 0) -> FailureCounter | None:
    counter = None
    for n in range(times):
        counter = RULES.after_account_failure(counter, KEY, later(start + n * every_s))
    return counter


@pytest.mark.parametrize(
    ("failures", "lockout_s"),
    [(4, 0), (5, 60), (6, 120), (7, 240), (8, 480), (9, 900), (10, 900), (200, 900)],
)
def test_lockout_starts_at_five_failures_and_doubles_up_to_fifteen_minutes(
    failures: int, lockout_s: int
) -> None:
    assert RULES.lockout_s(failures) == lockout_s


def test_fifth_failure_within_the_window_locks_for_a_minute() -> None:
    counter = fail(5)
    assert counter is not None
    assert counter.locked_until == later(4 + 60)
    assert RULES.account_locked(counter, later(4 + 59))
    assert not RULES.account_locked(counter, later(4 + 60))
    assert not RULES.account_locked(fail(4), later(5))


def test_failures_spread_wider_than_the_window_do_not_lock() -> None:
    # Five failures, but the fifth falls after the window that the first one opened.
    counter = fail(5, every_s=RULES.account_window_s / 4)
    assert counter is not None
    assert counter.failures == 1
    assert counter.locked_until is None


def test_the_streak_survives_its_lockouts_and_then_expires() -> None:
    counter = fail(5)
    assert counter is not None
    assert counter.locked_until is not None
    after_lock = RULES.after_account_failure(counter, KEY, counter.locked_until)
    assert after_lock.failures == 6
    assert after_lock.locked_until == counter.locked_until + timedelta(seconds=120)
    forgotten = after_lock.expires_at
    fresh = RULES.after_account_failure(after_lock, KEY, forgotten)
    assert (fresh.failures, fresh.locked_until) == (1, None)


def test_an_address_is_throttled_after_twenty_failures_until_its_window_ends() -> None:
    counter = None
    for n in range(RULES.ip_max_failures - 1):
        counter = RULES.after_ip_failure(counter, "ip:x", later(n))
    assert RULES.ip_retry_after(counter, later(30)) is None
    counter = RULES.after_ip_failure(counter, "ip:x", later(30))

    assert RULES.ip_retry_after(counter, later(30)) == RULES.ip_window_s - 30
    assert RULES.ip_retry_after(counter, later(RULES.ip_window_s - 0.5)) == 1
    assert RULES.ip_retry_after(counter, later(RULES.ip_window_s)) is None
    assert RULES.ip_retry_after(None, T0) is None
