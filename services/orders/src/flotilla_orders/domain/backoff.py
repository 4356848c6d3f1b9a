"""Retry delays: exponential backoff with full jitter.

A uniform draw below the exponential ceiling spreads the retries of many sagas that got
stuck together (a dependency restarting) instead of sending them back in waves.
"""

from __future__ import annotations

import math

__all__ = ["full_jitter"]

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
