"""The waterfall's geometry: each span a bar on one time axis, in SVG units."""

from __future__ import annotations

import pytest

from flotilla_web.domain.console_waterfall import (
    AXIS_HEIGHT,
    BAR_HEIGHT,
    MIN_BAR_WIDTH,
    ROW_HEIGHT,
    WIDTH,
    SpanBar,
    format_ms,
    lay_out,
)


def test_bars_sit_on_one_axis_from_the_first_start_to_the_last_end() -> None:
    # A 100 ms request; its child from 20 to 50 ms; the grandchild from 30 to 40 ms.
    waterfall = lay_out(
        [
            SpanBar("root", 0, 0.0, 100.0),
            SpanBar("child", 1, 20.0, 50.0),
            SpanBar("grandchild", 2, 30.0, 40.0),
        ]
    )
    assert waterfall.total_ms == 100.0
    assert [(b.span_id, b.x, b.width) for b in waterfall.boxes] == [
        ("root", 0.0, WIDTH),
        ("child", 200.0, 300.0),
        ("grandchild", 300.0, 100.0),
    ]
    assert [b.y for b in waterfall.boxes] == [
        AXIS_HEIGHT + row * ROW_HEIGHT + 17.0 for row in range(3)
    ]
    assert {b.height for b in waterfall.boxes} == {BAR_HEIGHT}
    assert waterfall.height == AXIS_HEIGHT + 3 * ROW_HEIGHT
    assert [b.depth for b in waterfall.boxes] == [0, 1, 2]


def test_offsets_count_from_the_earliest_start_even_before_the_root() -> None:
    # A child whose host clock runs 5 ms behind seems to start before its parent.
    waterfall = lay_out(
        [SpanBar("root", 0, 1_000.0, 1_045.0), SpanBar("skewed", 1, 995.0, 1_005.0)]
    )
    assert waterfall.total_ms == 50.0
    root, skewed = waterfall.boxes
    assert (root.x, root.width) == (100.0, 900.0)
    assert (skewed.x, skewed.width) == (0.0, 200.0)
    assert (root.offset_ms, skewed.offset_ms) == (5.0, 0.0)


def test_a_span_too_short_to_see_still_gets_a_visible_bar_inside_the_axis() -> None:
    waterfall = lay_out([SpanBar("root", 0, 0.0, 10_000.0), SpanBar("blip", 1, 10_000.0, 10_000.0)])
    blip = waterfall.boxes[1]
    assert blip.width == MIN_BAR_WIDTH
    assert blip.x + blip.width == WIDTH
    assert blip.duration_ms == 0.0


def test_a_trace_of_no_length_draws_minimal_bars_at_the_start() -> None:
    waterfall = lay_out([SpanBar("a", 0, 5.0, 5.0), SpanBar("b", 1, 5.0, 5.0)])
    assert waterfall.total_ms == 0.0
    assert [(b.x, b.width) for b in waterfall.boxes] == [(0.0, MIN_BAR_WIDTH)] * 2
    assert [t.label for t in waterfall.ticks] == ["0.00 ms"] * 5


def test_labels_start_at_a_bar_in_the_left_half_and_end_at_one_in_the_right_half() -> None:
    waterfall = lay_out([SpanBar("root", 0, 0.0, 100.0), SpanBar("late", 1, 80.0, 90.0)])
    root, late = waterfall.boxes
    assert (root.anchor, root.label_x) == ("start", 0.0)
    assert (late.anchor, late.label_x) == ("end", 900.0)
    assert late.label_y < late.y  # the label line is above the bar


def test_the_axis_has_five_ticks_labelled_in_time() -> None:
    waterfall = lay_out([SpanBar("root", 0, 0.0, 2_000.0)])
    assert [(t.x, t.label, t.anchor) for t in waterfall.ticks] == [
        (0.0, "0.00 ms", "start"),
        (250.0, "500.0 ms", "middle"),
        (500.0, "1.00 s", "middle"),
        (750.0, "1.50 s", "middle"),
        (1000.0, "2.00 s", "end"),
    ]


def test_no_spans_no_bars() -> None:
    waterfall = lay_out([])
    assert waterfall.boxes == ()
    assert waterfall.height == AXIS_HEIGHT


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(0.4215, "0.42 ms"), (9.994, "9.99 ms"), (12.34, "12.3 ms"), (1_250, "1.25 s")],
)
def test_durations_read_as_people_read_them(ms: float, shown: str) -> None:
    assert format_ms(ms) == shown
