"""When the supervisor restarts an instance that exited: a crash loop backs off, a process
that had run healthily comes back at once, however often it dies."""

from __future__ import annotations

from flotilla_cli.launcher.supervisor import restart_delay


def test_an_instance_that_never_became_ready_backs_off_doubling_up_to_ten_seconds() -> None:
    delays, backoff = [], 0.5
    for _ in range(7):
        delay, backoff = restart_delay(became_ready=False, backoff_s=backoff)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_an_instance_that_had_been_ready_is_restarted_at_once_and_its_backoff_starts_over() -> None:
    # Killed twice within a minute (the double-shard-failure scenario), after a crash loop.
    delay, backoff = restart_delay(became_ready=False, backoff_s=8.0)
    assert (delay, backoff) == (8.0, 10.0)
    for _ in range(2):
        delay, backoff = restart_delay(became_ready=True, backoff_s=backoff)
        assert (delay, backoff) == (0.0, 0.5)
