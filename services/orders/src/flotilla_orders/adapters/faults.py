"""Fault injection for chaos runs: at a configured point, with a configured probability,
the process ends at once, like `kill -9` (no cleanup, no shutdown, no flush of anything
but the log line that says why)."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Mapping

from flotilla_kit.logs import get_logger
from flotilla_orders.service_layer.faults import FaultPoint

__all__ = ["EXIT_STATUS", "ProcessFaults"]

EXIT_STATUS = 137  # what a shell reports for a process killed by SIGKILL

_log = get_logger("flotilla.orders.faults")


class ProcessFaults:
    def __init__(
        self,
        probabilities: Mapping[str, float],
        *,
        draw: Callable[[], float] = random.random,
        exit_now: Callable[[int], object] = os._exit,
    ) -> None:
        self._probabilities = {FaultPoint(k): p for k, p in probabilities.items() if p > 0}
        self._draw = draw
        self._exit_now = exit_now

    def hit(self, point: FaultPoint) -> None:
        probability = self._probabilities.get(point)
        if probability is None or self._draw() >= probability:
            return
        _log.warning("fault injected: the process exits now", fault_point=point.value)
        sys.stdout.flush()
        sys.stderr.flush()
        self._exit_now(EXIT_STATUS)
