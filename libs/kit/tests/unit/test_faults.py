"""Fault injection: a point fires with its probability and ends the process like kill -9;
one system-wide FLOTILLA_FAULTS value gives each service its own points."""

from __future__ import annotations

import enum

import pytest

from flotilla_kit.faults import EXIT_STATUS, ProcessFaults, faults_of_service


class Point(enum.StrEnum):
    AFTER_WRITE = "after_write"
    AFTER_CALL = "after_call"
    BEFORE_DONE = "before_done"


def test_a_point_fires_with_its_probability_and_exits_like_kill_9() -> None:
    exits: list[int] = []
    draws = iter([0.5, 0.05])
    faults = ProcessFaults(
        {"after_call": 0.1, "before_done": 0.0}, Point,
        draw=lambda: next(draws), exit_now=exits.append,
    )  # fmt: skip
    faults.hit(Point.AFTER_WRITE)  # not configured: no draw
    faults.hit(Point.BEFORE_DONE)  # probability 0: never, no draw
    faults.hit(Point.AFTER_CALL)  # draw 0.5 >= 0.1: not this time
    assert exits == []
    faults.hit(Point.AFTER_CALL)  # draw 0.05 < 0.1
    assert exits == [EXIT_STATUS] == [137]


def test_a_service_takes_its_own_and_unqualified_points_and_leaves_the_rest() -> None:
    system_wide = {"after_write": 0.1, "orders:after_call": 0.2, "payments:after_prepare": 0.3}
    assert faults_of_service(system_wide, service="orders", points=Point) == {
        "after_write": 0.1,
        "after_call": 0.2,
    }


@pytest.mark.parametrize(
    ("faults", "complaint"),
    [
        ({"nowhere": 0.1}, "unknown fault point 'nowhere'"),
        ({"orders:nowhere": 0.1}, "unknown fault point 'orders:nowhere'"),
        ({"orders:after_call": 1.5}, "between 0 and 1"),
        ({"after_call": -0.1}, "between 0 and 1"),
    ],
)
def test_an_unknown_point_or_a_bad_probability_is_refused(
    faults: dict[str, float], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        faults_of_service(faults, service="orders", points=Point)
