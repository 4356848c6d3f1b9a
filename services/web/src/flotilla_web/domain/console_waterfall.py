"""Where a trace's spans are drawn in the console's waterfall: one row per span (in the
order given: each under its parent), a bar from its start to its end on a time axis that
runs from the earliest start to the latest end of the trace, in the units of an SVG
`viewBox` WIDTH wide. Only numbers here: the page turns them into `<rect>` attributes.

The axis starts at the earliest start of any span, not of the roots: spans come from
several processes, and a child whose clock runs a little behind its parent's may start
"before" it; its bar still fits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AXIS_HEIGHT",
    "BAR_HEIGHT",
    "MIN_BAR_WIDTH",
    "ROW_HEIGHT",
    "WIDTH",
    "BarBox",
    "SpanBar",
    "Tick",
    "Waterfall",
    "format_ms",
    "lay_out",
]

WIDTH = 1000.0
ROW_HEIGHT = 34.0  # a label line above a bar
BAR_HEIGHT = 12.0
AXIS_HEIGHT = 24.0  # the tick labels above the first row
MIN_BAR_WIDTH = 2.0  # a span of no measurable length still shows
_LABEL_BASELINE = 13.0  # in a row, from its top
_BAR_TOP = 17.0
TICKS = 4  # intervals of the axis: 0, 25, 50, 75, 100 %


@dataclass(frozen=True, slots=True)
class SpanBar:
    """A span's place in time, in ms from any common origin, and its depth in the tree."""

    span_id: str
    depth: int
    start_ms: float
    end_ms: float


@dataclass(frozen=True, slots=True)
class BarBox:
    """A span's row: the bar's rectangle and where its label goes (`anchor`: the label
    starts at `label_x`, or ends there when the bar is in the right half)."""

    span_id: str
    row: int
    depth: int
    x: float
    y: float
    width: float
    height: float
    label_x: float
    label_y: float
    anchor: Literal["start", "end"]
    offset_ms: float  # from the start of the axis
    duration_ms: float


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str
    anchor: Literal["start", "middle", "end"]


@dataclass(frozen=True, slots=True)
class Waterfall:
    width: float
    height: float
    total_ms: float
    boxes: tuple[BarBox, ...]
    ticks: tuple[Tick, ...]


def format_ms(ms: float) -> str:
    """A duration as the waterfall labels it: `0.42 ms`, `12.5 ms`, `1.25 s`."""
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def _round(value: float) -> float:
    return round(value, 2)


def lay_out(bars: Sequence[SpanBar]) -> Waterfall:
    """The waterfall of `bars`, one row each, in their order."""
    if not bars:
        return Waterfall(WIDTH, AXIS_HEIGHT, 0.0, (), ())
    origin = min(bar.start_ms for bar in bars)
    total = max(max(bar.end_ms for bar in bars) - origin, 0.0)
    scale = WIDTH / total if total > 0 else 0.0
    boxes: list[BarBox] = []
    for row, bar in enumerate(bars):
        offset = bar.start_ms - origin
        duration = max(bar.end_ms - bar.start_ms, 0.0)
        width = max(duration * scale, MIN_BAR_WIDTH)
        x = min(offset * scale, WIDTH - width)  # a minimum-width bar at the end stays inside
        top = AXIS_HEIGHT + row * ROW_HEIGHT
        right_half = x > WIDTH / 2
        boxes.append(
            BarBox(
                span_id=bar.span_id,
                row=row,
                depth=bar.depth,
                x=_round(x),
                y=_round(top + _BAR_TOP),
                width=_round(width),
                height=BAR_HEIGHT,
                label_x=_round(x + width if right_half else x),
                label_y=_round(top + _LABEL_BASELINE),
                anchor="end" if right_half else "start",
                offset_ms=offset,
                duration_ms=duration,
            )
        )
    ticks = tuple(
        Tick(
            x=_round(WIDTH * i / TICKS),
            label=format_ms(total * i / TICKS),
            anchor="start" if i == 0 else "end" if i == TICKS else "middle",
        )
        for i in range(TICKS + 1)
    )
    height = AXIS_HEIGHT + len(bars) * ROW_HEIGHT
    return Waterfall(WIDTH, height, total, tuple(boxes), ticks)
