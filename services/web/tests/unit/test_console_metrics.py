"""The console's live figures: rates, error rate and p99 from two snapshots of a gateway's
cumulative counts, and the bounded history of snapshots they are taken from."""

from __future__ import annotations

import math

import pytest

from flotilla_web.domain.console_metrics import (
    DASH,
    GatewaySnapshot,
    InstanceCounts,
    InstanceRates,
    Quantile,
    SnapshotHistory,
    format_error_rate,
    format_p99,
    format_rate,
    quantile,
    rates_between,
)

BOUNDS = (0.001, 0.01, 0.1, 1.0)
KEY = ("accounts", "accounts-s0-1")


def counts(requests: int, errors: int, cumulative: tuple[int, ...]) -> InstanceCounts:
    return InstanceCounts(requests, errors, tuple(zip(BOUNDS, cumulative, strict=True)))


def snap(at: float, **instances: InstanceCounts) -> GatewaySnapshot:
    return GatewaySnapshot(
        "gateway-1",
        at,
        {(name.split("_")[0], name.replace("_", "-")): c for name, c in instances.items()},
    )


def test_the_99th_percentile_is_interpolated_within_its_bucket() -> None:
    # 100 requests: 50 under 1 ms, 40 more under 10 ms, 10 between 10 and 100 ms.
    # Rank 99 is the 9th of the 10 in (10, 100] ms: 10 + 90 * 9/10 = 91 ms.
    found = quantile(0.99, [(0.001, 50), (0.01, 90), (0.1, 100), (1.0, 100)], 100)
    assert found is not None
    assert not found.above
    assert found.seconds == pytest.approx(0.091)


def test_the_first_bucket_starts_at_zero() -> None:
    found = quantile(0.5, [(0.001, 10), (0.01, 10)], 10)
    assert found is not None
    assert found.seconds == pytest.approx(0.0005)


def test_a_percentile_beyond_the_highest_bucket_is_only_known_to_be_above_it() -> None:
    # 100 requests, only 95 within 1 s: the p99 is somewhere above 1 s.
    found = quantile(0.99, [(0.001, 0), (0.01, 50), (0.1, 90), (1.0, 95)], 100)
    assert found == Quantile(1.0, above=True)
    assert format_p99(InstanceRates(2.0, 50.0, 0.0, found)) == "> 1000"


def test_no_requests_or_counts_that_do_not_add_up_give_no_percentile() -> None:
    assert quantile(0.99, [(0.001, 0), (0.01, 0)], 0) is None
    assert quantile(0.99, [(0.001, 5), (0.01, 3)], 10) is None  # not cumulative
    assert quantile(0.99, [(0.001, 50)], 10) is None  # more in a bucket than in all
    assert quantile(0.99, [], 10) is None


def test_rates_over_the_window_between_two_snapshots() -> None:
    before = snap(100.0, accounts_s0_1=counts(1_000, 10, (500, 900, 1_000, 1_000)))
    # 2 s later: 200 more requests, 4 more errors; of the 200, 100 under 1 ms, 98 more
    # under 10 ms, 2 between 10 and 100 ms.
    after = snap(102.0, accounts_s0_1=counts(1_200, 14, (600, 1_098, 1_200, 1_200)))
    rates = rates_between(before, after)[KEY]
    assert rates.window_s == 2.0
    assert rates.requests_per_s == 100.0
    assert rates.error_rate == pytest.approx(0.02)
    # rank 198 of 200: the 198th is the last under 10 ms.
    assert rates.p99 is not None
    assert rates.p99.seconds == pytest.approx(0.01)
    assert (format_rate(rates), format_error_rate(rates), format_p99(rates)) == (
        "100",
        "2.0 %",
        "10.0",
    )


def test_without_an_earlier_snapshot_every_figure_is_a_dash() -> None:
    rates = rates_between(None, snap(5.0, accounts_s0_1=counts(10, 0, (10, 10, 10, 10))))[KEY]
    assert rates == InstanceRates.unknown()
    assert {format_rate(rates), format_error_rate(rates), format_p99(rates)} == {DASH}


def test_without_traffic_the_rate_is_zero_and_the_rest_dashes() -> None:
    same = counts(10, 1, (10, 10, 10, 10))
    rates = rates_between(snap(1.0, accounts_s0_1=same), snap(3.0, accounts_s0_1=same))[KEY]
    assert (format_rate(rates), format_error_rate(rates), format_p99(rates)) == ("0.0", DASH, DASH)


def test_counts_that_went_down_mean_a_restarted_gateway_not_negative_rates() -> None:
    before = snap(1.0, accounts_s0_1=counts(1_000, 10, (1_000, 1_000, 1_000, 1_000)))
    after = snap(3.0, accounts_s0_1=counts(5, 0, (5, 5, 5, 5)))
    assert rates_between(before, after)[KEY] == InstanceRates.unknown()


def test_an_instance_new_since_the_earlier_snapshot_has_no_figures_yet() -> None:
    before = snap(1.0, accounts_s0_1=counts(10, 0, (10, 10, 10, 10)))
    after = snap(
        3.0,
        accounts_s0_1=counts(20, 0, (20, 20, 20, 20)),
        accounts_s0_2=counts(4, 0, (4, 4, 4, 4)),
    )
    rates = rates_between(before, after)
    assert rates[KEY].requests_per_s == 5.0
    assert rates[("accounts", "accounts-s0-2")] == InstanceRates.unknown()


def test_the_history_compares_with_a_snapshot_at_least_the_minimum_window_old() -> None:
    history = SnapshotHistory(keep=4, min_window_s=1.0, max_age_s=10.0)
    first = snap(100.0)
    assert history.record(first) is None
    # Two people polling half a second apart: the second still compares with the first.
    assert history.record(snap(100.5)) is None
    assert history.record(snap(101.2)) is first
    assert history.record(snap(101.7)).at == 100.5  # type: ignore[union-attr]


def test_the_history_forgets_snapshots_older_than_its_maximum_age() -> None:
    history = SnapshotHistory(keep=4, min_window_s=1.0, max_age_s=10.0)
    history.record(snap(100.0))
    # The tab was hidden for a minute: no rate over that minute, a dash, then rates again.
    assert history.record(snap(160.0)) is None
    assert history.record(snap(162.0)).at == 160.0  # type: ignore[union-attr]


def test_the_history_is_bounded_per_gateway_and_in_gateways() -> None:
    history = SnapshotHistory(keep=3, max_gateways=2, min_window_s=1.0, max_age_s=100.0)
    for second in range(10):
        history.record(GatewaySnapshot("gateway-1", float(second), {}))
    assert len(history) == 3
    history.record(GatewaySnapshot("gateway-2", 1.0, {}))
    history.record(GatewaySnapshot("gateway-3", 1.0, {}))
    assert history.gateways() == ["gateway-2", "gateway-3"]
    assert len(history) == 2


def test_a_gateway_whose_clock_went_back_starts_its_history_again() -> None:
    history = SnapshotHistory(min_window_s=1.0, max_age_s=100.0)
    history.record(snap(100.0))
    assert history.record(snap(50.0)) is None
    assert history.record(snap(52.0)).at == 50.0  # type: ignore[union-attr]
    assert history.record(snap(math.nan)) is None


@pytest.mark.parametrize(
    ("rate", "shown"), [(0.04, "0.0"), (12.345, "12.3"), (99.94, "99.9"), (1234.5, "1234")]
)
def test_rates_are_shown_with_sensible_precision(rate: float, shown: str) -> None:
    assert format_rate(InstanceRates(1.0, rate, None, None)) == shown


def test_p99_is_shown_in_milliseconds() -> None:
    assert format_p99(InstanceRates(1.0, 1.0, 0.0, Quantile(0.00042))) == "0.4"
    assert format_p99(InstanceRates(1.0, 1.0, 0.0, Quantile(0.25))) == "250"
