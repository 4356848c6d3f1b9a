"""The operator console's live figures: requests per second, error rate and p99 of each
instance, from two snapshots of a gateway's cumulative counts.

A gateway answers `GET /api/v1/system/instances` with counts since it started (requests,
errors, a latency histogram in cumulative buckets). A rate needs two snapshots: the web
instance keeps the last few of each gateway (`SnapshotHistory`, bounded) and compares the
newest with one taken at least `min_window_s` before it. p99 is read from the histogram's
bucket deltas the way Prometheus' `histogram_quantile` reads them: linear within the bucket
that holds the 99th percentile; beyond the highest finite bucket it is only known to be
above that bound.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DASH",
    "GatewaySnapshot",
    "InstanceCounts",
    "InstanceRates",
    "Quantile",
    "SnapshotHistory",
    "format_error_rate",
    "format_p99",
    "format_rate",
    "quantile",
    "rates_between",
]

# What a figure that cannot be computed shows (no earlier snapshot, no traffic).
DASH = "\u2013"


@dataclass(frozen=True, slots=True)
class InstanceCounts:
    """One instance's counts as one gateway saw them since it started."""

    requests: int
    errors: int
    # (upper bound in seconds, cumulative count), bounds increasing; the +Inf bucket is
    # `requests` and is not listed.
    buckets: tuple[tuple[float, int], ...]


@dataclass(frozen=True, slots=True)
class GatewaySnapshot:
    """What one gateway answered at `at` (its unix time): counts by (service, instance)."""

    gateway: str
    at: float
    counts: Mapping[tuple[str, str], InstanceCounts]


@dataclass(frozen=True, slots=True)
class Quantile:
    """A latency quantile in seconds; `above` when it lies beyond the highest finite
    bucket (then `seconds` is that bound: the quantile is only known to be larger)."""

    seconds: float
    above: bool = False


@dataclass(frozen=True, slots=True)
class InstanceRates:
    """An instance's figures over a window; None where they cannot be computed."""

    window_s: float | None
    requests_per_s: float | None
    error_rate: float | None  # errors / requests, 0..1
    p99: Quantile | None

    @classmethod
    def unknown(cls) -> InstanceRates:
        return cls(None, None, None, None)


def quantile(q: float, deltas: Sequence[tuple[float, int]], total: int) -> Quantile | None:
    """The `q` quantile of the requests of a window: `deltas` are the window's cumulative
    bucket counts (upper bound, count) in increasing bounds, `total` its requests (the
    +Inf bucket). None without requests or with counts that do not add up."""
    if total <= 0 or not 0.0 < q <= 1.0:
        return None
    rank = q * total
    below_bound, below_count = 0.0, 0
    for bound, count in deltas:
        if count < below_count or count > total:
            return None  # not cumulative: a histogram that was reset or is corrupt
        if count >= rank:
            # below_count < rank <= count: the bucket holds at least one request.
            share = (rank - below_count) / (count - below_count)
            return Quantile(below_bound + (bound - below_bound) * share)
        below_bound, below_count = bound, count
    if not deltas:
        return None
    return Quantile(deltas[-1][0], above=True)


def _window_counts(
    before: InstanceCounts, after: InstanceCounts
) -> tuple[int, int, list[tuple[float, int]]] | None:
    """(requests, errors, bucket deltas) between two snapshots of an instance; None when
    the counts went down (the gateway restarted) or the buckets changed."""
    requests = after.requests - before.requests
    errors = after.errors - before.errors
    if requests < 0 or errors < 0 or len(before.buckets) != len(after.buckets):
        return None
    deltas: list[tuple[float, int]] = []
    for (bound_before, count_before), (bound_after, count_after) in zip(
        before.buckets, after.buckets, strict=True
    ):
        if bound_before != bound_after or count_after < count_before:
            return None
        deltas.append((bound_after, count_after - count_before))
    return requests, errors, deltas


def rates_between(
    before: GatewaySnapshot | None, after: GatewaySnapshot
) -> dict[tuple[str, str], InstanceRates]:
    """Each instance of `after` with its figures since `before` (of the same gateway).
    Unknown (None) without `before`, for an instance `before` lacks, and when the counts
    went down (the gateway restarted: its counts began again). Without traffic in the
    window: 0 requests/s, and no error rate or p99."""
    found: dict[tuple[str, str], InstanceRates] = {}
    window = after.at - before.at if before is not None else 0.0
    for key, counts in after.counts.items():
        earlier = before.counts.get(key) if before is not None else None
        window_counts = _window_counts(earlier, counts) if earlier is not None else None
        if window <= 0 or window_counts is None:
            found[key] = InstanceRates.unknown()
            continue
        requests, errors, deltas = window_counts
        found[key] = InstanceRates(
            window_s=window,
            requests_per_s=requests / window,
            error_rate=errors / requests if requests else None,
            p99=quantile(0.99, deltas, requests),
        )
    return found


class SnapshotHistory:
    """The last snapshots of each gateway this web instance has read, bounded: at most
    `keep` per gateway, none older than `max_age_s` before the newest, and at most
    `max_gateways` gateways (the one not heard from longest is forgotten first).

    `record(snapshot)` returns the snapshot to compare it with: the newest one taken at
    least `min_window_s` before it (several people polling at once then still see rates
    over a window of a second or more, not of a few milliseconds), or None."""

    def __init__(
        self,
        *,
        keep: int = 8,
        max_gateways: int = 16,
        min_window_s: float = 1.0,
        max_age_s: float = 60.0,
    ) -> None:
        if keep < 1 or max_gateways < 1 or min_window_s <= 0 or max_age_s <= min_window_s:
            raise ValueError("keep and max_gateways >= 1, 0 < min_window_s < max_age_s")
        self._keep = keep
        self._max_gateways = max_gateways
        self._min_window_s = min_window_s
        self._max_age_s = max_age_s
        self._by_gateway: OrderedDict[str, deque[GatewaySnapshot]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(kept) for kept in self._by_gateway.values())

    def gateways(self) -> list[str]:
        return list(self._by_gateway)

    def record(self, snapshot: GatewaySnapshot) -> GatewaySnapshot | None:
        if not math.isfinite(snapshot.at):
            return None
        kept = self._by_gateway.pop(snapshot.gateway, None)
        if kept is None:
            kept = deque(maxlen=self._keep)
        self._by_gateway[snapshot.gateway] = kept  # the most recently heard from: last
        while len(self._by_gateway) > self._max_gateways:
            self._by_gateway.popitem(last=False)
        if kept and snapshot.at < kept[-1].at:
            # Older than what is kept: the clock of that gateway went back (or it was
            # replaced by one of the same name): start again from this one.
            kept.clear()
        while kept and kept[0].at < snapshot.at - self._max_age_s:
            kept.popleft()
        baseline = next(
            (old for old in reversed(kept) if old.at <= snapshot.at - self._min_window_s), None
        )
        if not kept or snapshot.at > kept[-1].at:
            kept.append(snapshot)
        return baseline


def format_rate(rates: InstanceRates) -> str:
    """Requests per second as the table shows it: `12.3`, or a dash."""
    if rates.requests_per_s is None:
        return DASH
    value = rates.requests_per_s
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def format_error_rate(rates: InstanceRates) -> str:
    """`0.0 %`, `12.5 %`, or a dash (no requests in the window)."""
    if rates.error_rate is None:
        return DASH
    return f"{rates.error_rate * 100:.1f} %"


def format_p99(rates: InstanceRates) -> str:
    """p99 in milliseconds: `3.2`, `> 10000` (beyond the highest bucket), or a dash."""
    if rates.p99 is None:
        return DASH
    ms = rates.p99.seconds * 1000
    shown = f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}"
    return f"> {shown}" if rates.p99.above else shown
