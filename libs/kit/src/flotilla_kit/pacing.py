"""How often a background loop (recovery, the reservation sweeper) runs: every
`every_s` while its passes find work, and while they find none, twice as long after each
idle pass, up to `AT_REST_S`. A system at rest then costs almost nothing; what a crash
leaves behind is still found, within `AT_REST_S` of becoming due, by the instances that
live on (and at once by the one that restarts: every loop passes once at start).

And how long to wait before a retry: `full_jitter`, exponential backoff with full jitter. A
uniform draw below the exponential ceiling spreads the retries of many operations that
failed together (a dependency restarting) instead of sending them back in waves."""

from __future__ import annotations

import math

__all__ = ["AT_REST_S", "Pace", "full_jitter"]

AT_REST_S = 8.0


class Pace:
    def __init__(self, every_s: float, at_rest_s: float = AT_REST_S) -> None:
        self._every_s = every_s
        self._at_rest_s = max(every_s, at_rest_s)
        self._current_s = every_s

    def after(self, *, found_work: bool) -> float:
        """Seconds until the next pass, after one that found work or did not."""
        if found_work:
            self._current_s = self._every_s
        else:
            self._current_s = min(self._current_s * 2, self._at_rest_s)
        return self._current_s


_MAX_EXPONENT = 62


def full_jitter(attempt: int, *, initial_s: float, max_s: float, draw: float) -> float:
    """The delay before retry number `attempt + 1`: `draw` (in [0, 1]) of
    `min(max_s, initial_s * 2**attempt)`."""
    if attempt < 0:
        raise ValueError("attempt must not be negative")
    if not 0.0 <= draw <= 1.0:
        raise ValueError("draw must be in [0, 1]")
    ceiling = min(max_s, math.ldexp(initial_s, min(attempt, _MAX_EXPONENT)))
    return draw * ceiling
