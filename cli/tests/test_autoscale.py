"""The autoscaler's decision function against the HPA algorithm: cases by hand, then every
sequence of a grid against a transcription of the Kubernetes controller (an oracle with the
controller's own mutable bookkeeping)."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field

import pytest

from flotilla_cli.scaling.hpa import (
    DEFAULT_BEHAVIOR,
    Behavior,
    Decision,
    History,
    Rules,
    ScalingPolicy,
    decide,
)

FAST_DOWN = Behavior(
    scale_up=DEFAULT_BEHAVIOR.scale_up,
    scale_down=Rules(30.0, (ScalingPolicy("Percent", 100, 15.0),)),
)


def _decide(
    current: int,
    metric: float | None,
    *,
    target: float = 2.0,
    lo: int = 1,
    hi: int = 8,
    history: History | None = None,
    now: float = 1000.0,
    behavior: Behavior = DEFAULT_BEHAVIOR,
) -> tuple[Decision, History]:
    return decide(
        now=now, current=current, metric=metric, target=target, min_instances=lo,
        max_instances=hi, history=history or History(), behavior=behavior,
    )  # fmt: skip


# -- the formula and the tolerance ----------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "metric", "desired"),
    [
        (2, 3.0, 3),  # ceil(2 * 3 / 2)
        (3, 5.0, 7),  # ceil(7.5) = 8, but one step adds at most 4
        (1, 2.5, 2),  # ceil(1.25)
        (2, 5.0, 5),  # ceil(5.0): exact products are not rounded up further
        (4, 20.0, 8),  # capped by the maximum
    ],
)
def test_scales_up_by_the_ratio_of_metric_to_target(
    current: int, metric: float, desired: int
) -> None:
    decision, _ = _decide(current, metric)
    assert decision.desired == desired
    assert decision.recommendation == math.ceil(current * metric / 2.0)


# (2.2 / 2 is 1.1000000000000001 in floating point, just outside, as in the HPA.)
@pytest.mark.parametrize("metric", [1.81, 1.9, 2.0, 2.1, 2.19])
def test_within_the_tolerance_nothing_changes(metric: float) -> None:
    decision, _ = _decide(4, metric)
    assert decision.desired == 4
    assert decision.reason == "within tolerance"


@pytest.mark.parametrize(("metric", "desired"), [(2.21, 5), (1.79, 4)])
def test_just_outside_the_tolerance(metric: float, desired: int) -> None:
    # 2.21 / 2 = 1.105 -> ceil(4.42) = 5; 1.79 / 2 = 0.895 -> ceil(3.58) = 4 (rounds back)
    decision, _ = _decide(4, metric, behavior=FAST_DOWN)
    assert decision.desired == desired


def test_the_ratio_can_round_back_to_the_current_count() -> None:
    decision, _ = _decide(1, 0.5)  # ceil(1 * 0.25) = 1
    assert (decision.desired, decision.reason) == (1, "rounds to the current count")


# -- bounds ------------------------------------------------------------------------------
def test_above_the_maximum_goes_to_the_maximum_whatever_the_metric() -> None:
    for metric in (None, 0.0, 100.0):
        decision, _ = _decide(6, metric, hi=4)
        assert (decision.desired, decision.reason) == (4, "above the maximum (4)")


def test_below_the_minimum_goes_to_the_minimum_whatever_the_metric() -> None:
    for metric in (None, 0.0, 100.0):
        decision, _ = _decide(1, metric, lo=3, hi=5)
        assert (decision.desired, decision.reason) == (3, "below the minimum (3)")


def test_without_a_metric_nothing_changes_and_nothing_is_recommended() -> None:
    decision, history = _decide(3, None)
    assert (decision.desired, decision.reason) == (3, "no metric")
    assert history.recommendations == ()


def test_idle_goes_down_to_the_minimum_once_the_window_agrees() -> None:
    decision, _ = _decide(4, 0.0, lo=2, history=History(seeded=True))
    assert (decision.desired, decision.reason) == (2, "at the minimum (2)")


def test_a_fresh_autoscaler_counts_the_current_count_as_a_recommendation() -> None:
    decision, history = _decide(4, 0.0, now=0.0, behavior=FAST_DOWN)
    assert (decision.desired, decision.reason) == (4, "scale-down stabilization window")
    assert history.seeded
    assert history.recommendations == ((0.0, 4), (0.0, 0))
    decision, _ = _decide(4, 0.0, now=31.0, history=history, behavior=FAST_DOWN)
    assert decision.desired == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"target": 0.0}, {"target": -1.0}, {"lo": 0}, {"lo": 5, "hi": 4}],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be positive|min_instances"):
        _decide(2, 1.0, **kwargs)  # type: ignore[arg-type]


def test_a_negative_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        _decide(2, -1.0)


# -- stabilization -------------------------------------------------------------------------
def test_scale_down_waits_for_the_whole_window() -> None:
    history = History()
    decision, history = _decide(4, 8.0, history=history, now=0.0, behavior=FAST_DOWN)
    assert decision.desired == 8
    current = 8
    # Load drops: every recommendation within 30 s of the peak keeps the count up.
    for t in (5.0, 10.0, 20.0, 29.0):
        decision, history = _decide(current, 1.0, history=history, now=t, behavior=FAST_DOWN, hi=8)
        assert decision.desired == current, t
        assert decision.reason == "scale-down stabilization window"
    decision, history = _decide(current, 1.0, history=history, now=31.0, behavior=FAST_DOWN)
    assert decision.desired == 4  # ceil(8 * 0.5): the peak's 16 has left the window
    assert decision.recommendation == 4


def test_the_window_picks_its_highest_recommendation() -> None:
    history = History(recommendations=((90.0, 6), (95.0, 3)), seeded=True)
    decision, _ = _decide(8, 0.0, history=history, now=100.0, behavior=FAST_DOWN)
    assert decision.desired == 6


def test_scale_up_is_not_delayed_by_default() -> None:
    history = History(recommendations=((99.0, 1),))
    decision, _ = _decide(2, 4.0, history=history, now=100.0)
    assert decision.desired == 4


def test_a_scale_up_window_takes_the_lowest_recommendation() -> None:
    behavior = Behavior(
        scale_up=Rules(20.0, DEFAULT_BEHAVIOR.scale_up.policies),
        scale_down=FAST_DOWN.scale_down,
    )
    history = History(recommendations=((90.0, 3),), seeded=True)
    decision, _ = _decide(2, 8.0, history=history, now=100.0, behavior=behavior)
    assert decision.desired == 3
    history = History(recommendations=((90.0, 2),), seeded=True)
    decision, _ = _decide(2, 8.0, history=history, now=100.0, behavior=behavior)
    assert (decision.desired, decision.reason) == (2, "scale-up stabilization window")


# -- rate limits ---------------------------------------------------------------------------
def test_scale_up_takes_the_bigger_of_the_default_policies() -> None:
    # +100 % of 1 is 2, +4 pods is 5: Max selects 5.
    decision, _ = _decide(1, 100.0, hi=16)
    assert (decision.desired, decision.reason) == (5, "limited by the scale-up rate")
    # +100 % of 6 is 12, +4 is 10: 12.
    decision, _ = _decide(6, 100.0, hi=16)
    assert decision.desired == 12


def test_select_min_and_disabled() -> None:
    least = Behavior(
        scale_up=Rules(0.0, DEFAULT_BEHAVIOR.scale_up.policies, "Min"),
        scale_down=Rules(0.0, (ScalingPolicy("Pods", 1, 15.0), ScalingPolicy("Percent", 50, 15.0)),
                         "Min"),
    )  # fmt: skip
    assert _decide(1, 100.0, hi=16, behavior=least)[0].desired == 2
    assert _decide(8, 0.0, hi=16, behavior=least)[0].desired == 7  # -1 beats -50 %
    off = Behavior(
        scale_up=Rules(0.0, DEFAULT_BEHAVIOR.scale_up.policies, "Disabled"),
        scale_down=Rules(0.0, FAST_DOWN.scale_down.policies, "Disabled"),
    )
    assert _decide(2, 100.0, behavior=off)[0].desired == 2
    assert _decide(4, 0.0, behavior=off)[0].desired == 4


def test_changes_within_a_period_count_against_its_limit() -> None:
    # 2 -> 4 at t=100: within the 15 s period the start count is 2, so 4 pods allow 6.
    _, history = _decide(2, 4.0, now=100.0, hi=16)
    assert history.scale_ups == ((100.0, 2),)
    decision, history = _decide(4, 100.0, history=history, now=105.0, hi=16)
    assert (decision.desired, decision.reason) == (6, "limited by the scale-up rate")
    # After the period the count starts afresh.
    decision, _ = _decide(6, 100.0, history=history, now=125.0, hi=16)
    assert decision.desired == 12


def test_scale_down_rate_limit() -> None:
    behavior = Behavior(
        scale_up=DEFAULT_BEHAVIOR.scale_up,
        scale_down=Rules(0.0, (ScalingPolicy("Pods", 1, 60.0),)),
    )
    decision, history = _decide(4, 0.0, now=0.0, behavior=behavior)
    assert (decision.desired, decision.reason) == (3, "limited by the scale-down rate")
    decision, history = _decide(3, 0.0, history=history, now=30.0, behavior=behavior)
    assert decision.desired == 3  # the one allowed this period is spent
    decision, _ = _decide(3, 0.0, history=history, now=61.0, behavior=behavior)
    assert decision.desired == 2


def test_history_forgets_what_no_window_or_period_needs() -> None:
    history = History(
        recommendations=((0.0, 9), (995.0, 3)),
        scale_ups=((0.0, 1), (990.0, 1)),
        scale_downs=((1.0, 1),),
        seeded=True,
    )
    _, history = _decide(3, 2.0, history=history, now=1000.0, behavior=FAST_DOWN)
    assert history.recommendations == ((995.0, 3), (1000.0, 3))
    assert history.scale_ups == ((990.0, 1),)
    assert history.scale_downs == ()


# -- the oracle: the Kubernetes controller, transcribed with its own bookkeeping ------------
@dataclass
class _Controller:
    """pkg/controller/podautoscaler/horizontal.go (normalizeDesiredReplicasWithBehaviors,
    stabilizeRecommendationWithBehaviors, convertDesiredReplicasWithBehaviorRate,
    calculateScale{Up,Down}Limit...) and replica_calculator.go's tolerance rule."""

    behavior: Behavior
    recommendations: list[list[float]] = field(default_factory=list)  # [t, n]
    seeded: bool = False
    ups: list[tuple[float, int, bool]] = field(default_factory=list)  # (t, n, outdated)
    downs: list[tuple[float, int, bool]] = field(default_factory=list)

    def _per_period(self, events: list[tuple[float, int, bool]], now: float, p: float) -> int:
        return sum(n for t, n, outdated in events if not outdated and t > now - p)

    def _limit(self, rules: Rules, current: int, now: float, up: bool) -> int:
        if rules.select == "Disabled":
            return current
        use_max = (rules.select != "Min") == up
        result = -(10**9) if use_max else 10**9
        for policy in rules.policies:
            start = (
                current
                - self._per_period(self.ups, now, policy.period_s)
                + self._per_period(self.downs, now, policy.period_s)
            )
            if policy.kind == "Pods":
                proposed = start + policy.value if up else start - policy.value
            elif up:
                proposed = math.ceil(start * (1 + policy.value / 100))
            else:
                proposed = int(start * (1 - policy.value / 100))
            result = max(result, proposed) if use_max else min(result, proposed)
        return result

    def step(  # noqa: PLR0912 - a transcription, branch for branch
        self, now: float, current: int, metric: float | None, target: float, lo: int, hi: int
    ) -> int:
        if current > hi:
            desired = hi
        elif current < lo:
            desired = lo
        elif metric is None:
            return current
        else:
            ratio = metric / target
            raw = current if abs(1.0 - ratio) <= 0.1 else math.ceil(ratio * current)
            if not self.seeded:  # maybeInitScaleDownStabilizationWindow
                self.recommendations.append([now, current])
                self.seeded = True
            up_cut = now - self.behavior.scale_up.stabilization_window_s
            down_cut = now - self.behavior.scale_down.stabilization_window_s
            up_rec = down_rec = raw
            found_old, old_index = False, 0
            for i, (t, n) in enumerate(self.recommendations):
                if t > up_cut:
                    up_rec = min(int(n), up_rec)
                if t > down_cut:
                    down_rec = max(int(n), down_rec)
                if t < up_cut and t < down_cut:
                    found_old, old_index = True, i
            stabilized = max(current, up_rec)
            stabilized = min(stabilized, down_rec)
            if found_old:
                self.recommendations[old_index] = [now, raw]
            else:
                self.recommendations.append([now, raw])
            desired = stabilized
            if desired > current:
                limit = max(self._limit(self.behavior.scale_up, current, now, True), current)
                desired = min(desired, hi, limit)
            elif desired < current:
                limit = min(self._limit(self.behavior.scale_down, current, now, False), current)
                desired = max(desired, lo, limit)
        # storeScaleEvent: mark events older than the longest period outdated, add this one.
        longest = self.behavior.longest_period_s
        self.ups = [(t, n, o or t <= now - longest) for t, n, o in self.ups]
        self.downs = [(t, n, o or t <= now - longest) for t, n, o in self.downs]
        if desired > current:
            self.ups.append((now, desired - current, False))
        elif desired < current:
            self.downs.append((now, current - desired, False))
        return desired


_BEHAVIORS = [
    DEFAULT_BEHAVIOR,
    FAST_DOWN,
    Behavior(
        scale_up=Rules(10.0, (ScalingPolicy("Pods", 1, 20.0),)),
        scale_down=Rules(
            20.0, (ScalingPolicy("Pods", 2, 10.0), ScalingPolicy("Percent", 30, 25.0)), "Min"
        ),
    ),
    Behavior(
        scale_up=Rules(0.0, (ScalingPolicy("Percent", 50, 15.0),), "Min"),
        scale_down=Rules(0.0, (ScalingPolicy("Percent", 50, 15.0),)),
    ),
]


@pytest.mark.parametrize("behavior", _BEHAVIORS, ids=["default", "fast", "slow", "half"])
@pytest.mark.parametrize("seed", range(25))
def test_every_step_agrees_with_the_kubernetes_controller(behavior: Behavior, seed: int) -> None:
    rng = random.Random(seed)
    lo, hi = rng.choice([(1, 4), (1, 8), (2, 6), (3, 3)])
    target = rng.choice([0.5, 1.0, 2.0, 5.0])
    oracle = _Controller(behavior)
    history = History()
    current = rng.randint(1, 9)  # sometimes out of bounds at first
    now = 0.0
    for _ in range(60):
        now += rng.choice([1.0, 3.0, 5.0, 5.0, 12.0, 40.0])
        metric = rng.choice(
            [None, 0.0, target, target * 1.1, target * 0.9, rng.uniform(0, 4 * target)]
        )
        expected = oracle.step(now, current, metric, target, lo, hi)
        decision, history = decide(
            now=now, current=current, metric=metric, target=target, min_instances=lo,
            max_instances=hi, history=history, behavior=behavior,
        )  # fmt: skip
        assert decision.desired == expected, (now, current, metric, decision)
        assert lo <= decision.desired <= hi or metric is None
        current = decision.desired


def test_every_small_case_stays_in_bounds_and_moves_the_right_way() -> None:
    for current, lo, hi, metric in itertools.product(
        range(1, 7), range(1, 4), range(3, 7), [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 8.0]
    ):
        if lo > hi:
            continue
        decision, _ = _decide(current, metric, target=1.5, lo=lo, hi=hi, behavior=FAST_DOWN)
        assert lo <= decision.desired <= hi
        if lo <= current <= hi:
            if metric > 1.5 * 1.1:
                assert decision.desired >= current
            if metric < 1.5 * 0.9:
                assert decision.desired <= current
            if abs(1 - metric / 1.5) <= 0.1:
                assert decision.desired == current
