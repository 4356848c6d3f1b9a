"""Fault injection: the points in a transfer's life where a test or chaos run can make
the process die, to prove that recovery finishes what was started."""

from __future__ import annotations

import enum

__all__ = ["FaultPoint", "NoFaults"]


class FaultPoint(enum.StrEnum):
    # PREPARING is durable; no participant has been contacted.
    AFTER_PREPARING_RECORD = "after_preparing_record"
    # Both votes are in; the decision is not written.
    AFTER_PREPARE = "after_prepare"
    # The decision is durable; no participant has been told.
    AFTER_DECISION = "after_decision"
    # One participant acknowledged the commit, the other not yet.
    AFTER_FIRST_COMMIT = "after_first_commit"
    # Every participant acknowledged; the final state is not written.
    BEFORE_DONE = "before_done"


class NoFaults:
    """Production: nothing is injected."""

    def hit(self, point: FaultPoint) -> None:
        return None
