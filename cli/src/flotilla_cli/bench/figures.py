"""The small sums and the table cells every benchmark shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["cell", "quantile_ms", "ratio"]


def quantile_ms(ordered: Sequence[float], q: float, digits: int = 2) -> float | None:
    """The q-quantile (nearest rank below) of sorted seconds, in ms; None for none."""
    if not ordered:
        return None
    return round(ordered[int(q * (len(ordered) - 1))] * 1000, digits)


def ratio(top: float | None, bottom: float | None, digits: int = 2) -> float | None:
    """top / bottom, or None where either is missing (or the bottom is zero)."""
    return round(top / bottom, digits) if top is not None and bottom else None


def cell(value: Any) -> str:
    """A table cell: '-' for nothing, thousands separated for a float."""
    return "-" if value is None else f"{value:,}" if isinstance(value, float) else str(value)
