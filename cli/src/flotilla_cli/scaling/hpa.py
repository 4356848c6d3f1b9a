"""Scaling decisions, made by the rule a Kubernetes HorizontalPodAutoscaler (autoscaling/v2)
uses, as a pure function: `flotilla up --autoscale` asks it every few seconds per service.

The steps are those of the HPA controller (pkg/controller/podautoscaler):

1. Out of bounds first: more instances than `max_instances` -> max, fewer than
   `min_instances` -> min, whatever the metric says.
2. No metric -> no change.
3. The raw recommendation: `ratio = metric / target`; within `tolerance` of 1 -> the current
   count, else `ceil(current * ratio)` (the metric is the average per instance).
4. Stabilization: the recommendation is raised to the lowest one of the scale-up window and
   lowered to the highest one of the scale-down window (so a service only shrinks when
   every recommendation of the last `scale_down.stabilization_window_s` said so; the first
   decision seeds the window with the current count).
5. Rate limits: the scaling policies (Pods or Percent per period; `Max` selects the policy
   allowing the biggest change, `Min` the smallest, `Disabled` none) bound the change,
   counted from the count at the start of each policy's period; then min/max.

Times are seconds on a monotonic clock; the caller keeps the returned `History`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = [
    "DEFAULT_BEHAVIOR",
    "Behavior",
    "Decision",
    "History",
    "Rules",
    "ScalingPolicy",
    "decide",
]


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """HPAScalingPolicy: change by at most `value` pods (or percent) per `period_s`."""

    kind: Literal["Pods", "Percent"]
    value: int
    period_s: float


@dataclass(frozen=True, slots=True)
class Rules:
    """HPAScalingRules, for one direction."""

    stabilization_window_s: float
    policies: tuple[ScalingPolicy, ...]
    select: Literal["Max", "Min", "Disabled"] = "Max"


@dataclass(frozen=True, slots=True)
class Behavior:
    scale_up: Rules
    scale_down: Rules

    @property
    def longest_period_s(self) -> float:
        periods = [p.period_s for p in (*self.scale_up.policies, *self.scale_down.policies)]
        return max(periods, default=0.0)


# The HPA's defaults (scale up: +100 % or +4 pods per 15 s, whichever is more, no window;
# scale down: -100 % per 15 s after a 300 s window). `flotilla up --autoscale` shortens the
# scale-down window (`--scale-down-window`), since a laptop demo does not last five minutes.
DEFAULT_BEHAVIOR = Behavior(
    scale_up=Rules(0.0, (ScalingPolicy("Percent", 100, 15.0), ScalingPolicy("Pods", 4, 15.0))),
    scale_down=Rules(300.0, (ScalingPolicy("Percent", 100, 15.0),)),
)


@dataclass(frozen=True, slots=True)
class History:
    """What one service's autoscaler remembers: raw recommendations (for stabilization)
    and the changes it made (for the rate limits), each `(time, count)`."""

    recommendations: tuple[tuple[float, int], ...] = ()
    scale_ups: tuple[tuple[float, int], ...] = ()  # instances added
    scale_downs: tuple[tuple[float, int], ...] = ()  # instances removed
    # The first decision with a metric seeds the window with the current count
    # (maybeInitScaleDownStabilizationWindow): a freshly started autoscaler does not
    # shrink a service before a whole window has recommended it.
    seeded: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    current: int
    desired: int
    metric: float | None
    reason: str
    recommendation: int | None = field(default=None)  # raw, before stabilization and limits

    @property
    def changes(self) -> bool:
        return self.desired != self.current


def _changed_in_period(events: tuple[tuple[float, int], ...], now: float, period_s: float) -> int:
    cutoff = now - period_s
    return sum(count for at, count in events if at > cutoff)


def _scale_up_limit(current: int, history: History, rules: Rules, now: float) -> int:
    if rules.select == "Disabled":
        return current
    limits: list[int] = []
    for policy in rules.policies:
        start = (
            current
            - _changed_in_period(history.scale_ups, now, policy.period_s)
            + _changed_in_period(history.scale_downs, now, policy.period_s)
        )
        if policy.kind == "Pods":
            limits.append(start + policy.value)
        else:  # rounded up, or a small count could never grow
            limits.append(math.ceil(start * (1 + policy.value / 100)))
    if not limits:
        return current
    return min(limits) if rules.select == "Min" else max(limits)


def _scale_down_limit(current: int, history: History, rules: Rules, now: float) -> int:
    if rules.select == "Disabled":
        return current
    limits: list[int] = []
    for policy in rules.policies:
        start = (
            current
            - _changed_in_period(history.scale_ups, now, policy.period_s)
            + _changed_in_period(history.scale_downs, now, policy.period_s)
        )
        if policy.kind == "Pods":
            limits.append(start - policy.value)
        else:  # truncated, as the HPA does
            limits.append(int(start * (1 - policy.value / 100)))
    if not limits:
        return current
    return max(limits) if rules.select == "Min" else min(limits)


def _recorded(history: History, behavior: Behavior, now: float, current: int, desired: int,
              recommendation: int | None) -> History:  # fmt: skip
    keep_s = max(
        behavior.scale_up.stabilization_window_s, behavior.scale_down.stabilization_window_s
    )
    recommendations = history.recommendations
    if recommendation is not None:
        recommendations = (
            *((at, r) for at, r in recommendations if at >= now - keep_s),
            (now, recommendation),
        )
    period = behavior.longest_period_s
    ups = tuple((at, n) for at, n in history.scale_ups if at > now - period)
    downs = tuple((at, n) for at, n in history.scale_downs if at > now - period)
    if desired > current:
        ups = (*ups, (now, desired - current))
    elif desired < current:
        downs = (*downs, (now, current - desired))
    return replace(history, recommendations=recommendations, scale_ups=ups, scale_downs=downs)


def _stabilized(raw: int, current: int, history: History, behavior: Behavior, now: float) -> int:
    """Raised to the lowest recommendation of the scale-up window, lowered to the highest
    of the scale-down window; the raw one counts as one of each."""
    up_cutoff = now - behavior.scale_up.stabilization_window_s
    down_cutoff = now - behavior.scale_down.stabilization_window_s
    up_floor = min([raw, *(r for at, r in history.recommendations if at > up_cutoff)])
    down_ceiling = max([raw, *(r for at, r in history.recommendations if at > down_cutoff)])
    return min(max(current, up_floor), down_ceiling)


def _rate_limited(
    stabilized: int, *, current: int, lo: int, hi: int, history: History, behavior: Behavior,
    now: float,
) -> tuple[int, str | None]:  # fmt: skip
    """The stabilized count within the policies' rate and min/max; the reason when they
    changed it."""
    if stabilized > current:
        limit = max(_scale_up_limit(current, history, behavior.scale_up, now), current)
        bound, why = (hi, f"at the maximum ({hi})") if hi <= limit else (limit, None)
        if stabilized > bound:
            return bound, why or "limited by the scale-up rate"
    elif stabilized < current:
        limit = min(_scale_down_limit(current, history, behavior.scale_down, now), current)
        bound, why = (lo, f"at the minimum ({lo})") if lo >= limit else (limit, None)
        if stabilized < bound:
            return bound, why or "limited by the scale-down rate"
    return stabilized, None


def _reason(*, current: int, desired: int, raw: int, within: bool, metric: float,
            target: float) -> str:  # fmt: skip
    if desired > current:
        return f"{metric:.2f} in flight per instance > target {target:g}"
    if desired < current:
        return f"{metric:.2f} in flight per instance < target {target:g}"
    if within:
        return "within tolerance"
    if raw < current:
        return "scale-down stabilization window"
    if raw > current:  # only with a scale-up window
        return "scale-up stabilization window"
    return "rounds to the current count"


def decide(
    *,
    now: float,
    current: int,
    metric: float | None,
    target: float,
    min_instances: int,
    max_instances: int,
    history: History,
    tolerance: float = 0.1,
    behavior: Behavior = DEFAULT_BEHAVIOR,
) -> tuple[Decision, History]:
    """The count a service should have now; the history is returned updated, on the
    assumption that the caller applies the decision."""
    if target <= 0:
        raise ValueError("the target must be positive")
    if not 1 <= min_instances <= max_instances:
        raise ValueError("need 1 <= min_instances <= max_instances")
    if metric is not None and metric < 0:
        raise ValueError("a metric of requests in flight cannot be negative")

    raw: int | None = None
    if current > max_instances:
        desired, reason = max_instances, f"above the maximum ({max_instances})"
    elif current < min_instances:
        desired, reason = min_instances, f"below the minimum ({min_instances})"
    elif metric is None:
        desired, reason = current, "no metric"
    else:
        ratio = metric / target
        within = abs(1.0 - ratio) <= tolerance
        raw = current if within else math.ceil(current * ratio)
        if not history.seeded:
            history = replace(
                history, seeded=True, recommendations=(*history.recommendations, (now, current))
            )
        stabilized = _stabilized(raw, current, history, behavior, now)
        desired, limited = _rate_limited(
            stabilized, current=current, lo=min_instances, hi=max_instances,
            history=history, behavior=behavior, now=now,
        )  # fmt: skip
        reason = limited or _reason(
            current=current, desired=desired, raw=raw, within=within, metric=metric,
            target=target,
        )  # fmt: skip
    decision = Decision(current, desired, metric, reason, raw)
    return decision, _recorded(history, behavior, now, current, desired, raw)
