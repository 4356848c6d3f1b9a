"""Failed-login counters: per account (lockout with exponential backoff) and per client IP
(throttling).

The account counter is keyed by the normalised username whether or not such a user exists,
so locking out, and the answers during a lockout, are the same for every name and reveal
nothing about which names are real. Keys are hashes: a password typed into the username
field by mistake must not sit in a table in clear. (Client IPs are kept as they are: they
are in the audit log anyway, and an operator looking at a throttle needs to read them.)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

__all__ = ["FailureCounter", "LoginProtection", "account_key", "ip_key"]


def account_key(normalised_username: str) -> str:
    return "account:" + hashlib.sha256(normalised_username.encode()).hexdigest()


def ip_key(client_ip: str) -> str:
    return "ip:" + client_ip


@dataclass(frozen=True, slots=True)
class FailureCounter:
    key: str
    failures: int
    window_started_at: datetime
    # Past this moment the counter is forgotten (and may be deleted).
    expires_at: datetime
    locked_until: datetime | None = None

    def is_live(self, now: datetime) -> bool:
        return now < self.expires_at


@dataclass(frozen=True, slots=True)
class LoginProtection:
    account_max_failures: int = 5
    account_window_s: int = 900
    lockout_base_s: int = 60
    lockout_max_s: int = 900
    ip_max_failures: int = 20
    ip_window_s: int = 300

    # -- per account ------------------------------------------------------------------------
    def account_locked(self, counter: FailureCounter | None, now: datetime) -> bool:
        return (
            counter is not None and counter.locked_until is not None and now < counter.locked_until
        )

    def lockout_s(self, failures: int) -> int:
        """60 s at the threshold, doubling with each further failure, capped."""
        excess = failures - self.account_max_failures
        if excess < 0:
            return 0
        # Cap the exponent before computing: an old counter must not build a huge number.
        lockout: int = self.lockout_base_s * 2 ** min(excess, 32)
        return min(lockout, self.lockout_max_s)

    def after_account_failure(
        self, counter: FailureCounter | None, key: str, now: datetime
    ) -> FailureCounter:
        """The counter after a failed login that was checked (not refused as locked).

        The threshold counts failures within a window from the first one. Once it is
        reached, the streak lives on until one window after the last lockout ends, so each
        further failure doubles the lockout instead of starting over.
        """
        if counter is None or not counter.is_live(now):
            counter = FailureCounter(key, 0, now, now + timedelta(seconds=self.account_window_s))
        failures = counter.failures + 1
        lockout = self.lockout_s(failures)
        if lockout == 0:
            return replace(counter, failures=failures)
        locked_until = now + timedelta(seconds=lockout)
        return replace(
            counter,
            failures=failures,
            locked_until=locked_until,
            expires_at=locked_until + timedelta(seconds=self.account_window_s),
        )

    # -- per client IP ----------------------------------------------------------------------
    def ip_retry_after(self, counter: FailureCounter | None, now: datetime) -> int | None:
        """Seconds until the IP may try again, or None when it may try now."""
        if counter is None or not counter.is_live(now):
            return None
        if counter.failures < self.ip_max_failures:
            return None
        return max(1, math.ceil((counter.expires_at - now).total_seconds()))

    def after_ip_failure(
        self, counter: FailureCounter | None, key: str, now: datetime
    ) -> FailureCounter:
        if counter is None or not counter.is_live(now):
            return FailureCounter(key, 1, now, now + timedelta(seconds=self.ip_window_s))
        return replace(counter, failures=counter.failures + 1)
