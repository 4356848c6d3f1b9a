"""Fault injection for tests and chaos runs: at a named point, with a set probability, the
process ends at once, like `kill -9` (no cleanup, no shutdown, no flush of anything but the
log line that says why).

One `FLOTILLA_FAULTS` value can serve a whole system: a point may be qualified by the
service it belongs to (`"orders:after_pay_call"`), and each service takes its own points
and the unqualified ones, and leaves the other services' points alone. An unknown point of
its own is an error, so that a typo does not silently test nothing."""

from __future__ import annotations

import enum
import os
import random
import sys
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from flotilla_kit.logs import get_logger

__all__ = ["EXIT_STATUS", "ProcessFaults", "faults_of_service"]

EXIT_STATUS = 137  # what a shell reports for a process killed by SIGKILL

_log = get_logger("flotilla.faults")

Point = TypeVar("Point", bound=enum.StrEnum)


def faults_of_service(
    faults: Mapping[str, float], *, service: str, points: type[enum.StrEnum]
) -> dict[str, float]:
    """This service's points (qualifier removed); raises ValueError on an unknown point of
    its own or a probability outside [0, 1]."""
    known = {p.value for p in points}
    own: dict[str, float] = {}
    for key, probability in faults.items():
        owner, _, point = key.rpartition(":")
        if owner and owner != service:
            continue
        if point not in known:
            raise ValueError(f"unknown fault point {key!r}; known: {sorted(known)}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"the probability of {key!r} must be between 0 and 1")
        own[point] = probability
    return own


class ProcessFaults(Generic[Point]):
    def __init__(
        self,
        probabilities: Mapping[str, float],
        points: type[Point],
        *,
        draw: Callable[[], float] = random.random,
        exit_now: Callable[[int], object] = os._exit,
    ) -> None:
        self._probabilities = {points(k): p for k, p in probabilities.items() if p > 0}
        self._draw = draw
        self._exit_now = exit_now

    def hit(self, point: Point) -> None:
        probability = self._probabilities.get(point)
        if probability is None or self._draw() >= probability:
            return
        _log.warning("fault injected: the process exits now", fault_point=point.value)
        sys.stdout.flush()
        sys.stderr.flush()
        self._exit_now(EXIT_STATUS)
