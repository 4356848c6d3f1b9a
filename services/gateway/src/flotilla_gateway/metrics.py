"""The gateway's Prometheus metrics, in a registry of its own.

The gateway runs on one event-loop thread, so its request counters are plain integers
kept per route (resolved at start) and read by a collector at scrape time: counting a
request costs a dict update and a bisect, not the locks prometheus-client's own
children take on every `inc()` and `observe()`. Upstream gauges (in flight, healthy) are
not updated per request at all: they are read from the balancer when Prometheus scrapes,
so they are exact and free on the hot path. They carry the instance's shard, if any.
Per-instance request counts and latencies, ejections, breaker states and retry budgets
are plain numbers on the balancer's objects, read the same way.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from flotilla_gateway.balancer import LATENCY_BUCKETS

if TYPE_CHECKING:
    from flotilla_gateway.balancer import Registry

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "GatewayMetrics", "RouteMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode("ascii")


class RouteMetrics:
    """Requests by status and a latency histogram for one route label."""

    __slots__ = ("_buckets", "_by_status", "_limited", "_retries", "_sum", "label")

    def __init__(self, label: str) -> None:
        self.label = label
        self._by_status: dict[int, int] = {}
        # One slot per bucket bound, plus +Inf; cumulated when scraped.
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._sum = 0.0
        # Requests refused by a rate limit, by kind of limit ("identity" or "ip").
        self._limited: dict[str, int] = {}
        # Requests sent once more to another instance.
        self._retries = 0

    def retried(self) -> None:
        self._retries += 1

    def rate_limited(self, kind: str) -> None:
        limited = self._limited
        limited[kind] = limited.get(kind, 0) + 1

    def observe(self, status: int, seconds: float) -> None:
        by_status = self._by_status
        by_status[status] = by_status.get(status, 0) + 1
        # `le` buckets: a value equal to a bound belongs to that bound's bucket.
        self._buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sum += seconds

    def add_to(self, requests: CounterMetricFamily, duration: HistogramMetricFamily) -> None:
        for status, count in sorted(self._by_status.items()):
            requests.add_metric([self.label, str(status)], count)
        cumulative = list(accumulate(self._buckets))
        duration.add_metric(
            [self.label], buckets=list(zip(_BOUNDS, cumulative, strict=True)), sum_value=self._sum
        )

    def add_limited_to(self, limited: CounterMetricFamily) -> None:
        for kind, count in sorted(self._limited.items()):
            limited.add_metric([self.label, kind], count)

    def add_retries_to(self, retries: CounterMetricFamily) -> None:
        if self._retries:
            retries.add_metric([self.label], self._retries)


_BOUNDS = [repr(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]


# `shard` is empty for an unsharded service's instances (to Prometheus: no shard label).
_INSTANCE_LABELS = ["service", "instance", "shard"]


class _Collector:
    def __init__(self, routes: dict[str, RouteMetrics], registry: Registry) -> None:
        self._routes = routes
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "flotilla_gateway_requests",
            "Requests answered by the gateway, by route and status code.",
            labels=["route", "status"],
        )
        duration = HistogramMetricFamily(
            "flotilla_gateway_request_duration_seconds",
            "Time from a complete request to its reply being ready, by route.",
            labels=["route"],
        )
        limited = CounterMetricFamily(
            "flotilla_gateway_rate_limited",
            "Requests refused with 429 by a rate limit, by route and kind of limit.",
            labels=["route", "limit"],
        )
        retries = CounterMetricFamily(
            "flotilla_gateway_retries",
            "Requests sent once more to another instance, by route.",
            labels=["route"],
        )
        for route in list(self._routes.values()):
            route.add_to(requests, duration)
            route.add_limited_to(limited)
            route.add_retries_to(retries)
        in_flight = GaugeMetricFamily(
            "flotilla_gateway_upstream_in_flight",
            "Requests sent to an upstream instance and not yet answered.",
            labels=_INSTANCE_LABELS,
        )
        healthy = GaugeMetricFamily(
            "flotilla_gateway_upstream_healthy",
            "1 when the instance passes its health checks and gets traffic, else 0.",
            labels=_INSTANCE_LABELS,
        )
        upstream_requests = CounterMetricFamily(
            "flotilla_gateway_upstream_requests",
            "Attempts sent to an upstream instance, by outcome: `response` (any status) or "
            "`error` (connect error, reset, timeout, malformed response).",
            labels=[*_INSTANCE_LABELS, "outcome"],
        )
        upstream_duration = HistogramMetricFamily(
            "flotilla_gateway_upstream_duration_seconds",
            "Time from sending an attempt to an instance to its outcome.",
            labels=_INSTANCE_LABELS,
        )
        ejections = CounterMetricFamily(
            "flotilla_gateway_upstream_ejections",
            "Times an instance was ejected after consecutive failed requests.",
            labels=_INSTANCE_LABELS,
        )
        for instance in self._registry.instances():
            shard = "" if instance.shard is None else str(instance.shard)
            labels = [instance.service, instance.name, shard]
            in_flight.add_metric(labels, instance.in_flight)
            healthy.add_metric(labels, 1.0 if instance.available else 0.0)
            upstream_requests.add_metric([*labels, "response"], instance.answered)
            upstream_requests.add_metric([*labels, "error"], instance.failed)
            cumulative = list(accumulate(instance.latency_buckets))
            upstream_duration.add_metric(
                labels,
                buckets=list(zip(_BOUNDS, cumulative, strict=True)),
                sum_value=instance.latency_sum,
            )
            ejections.add_metric(labels, instance.ejections)
        breaker = GaugeMetricFamily(
            "flotilla_gateway_upstream_breaker_state",
            "Circuit breaker of an upstream service, or of one shard of a sharded service "
            "(`shard` empty: the whole service): 0 closed, 1 half-open, 2 open.",
            labels=["service", "shard"],
        )
        exhausted = CounterMetricFamily(
            "flotilla_gateway_retry_budget_exhausted",
            "Retries not made because the service's retry budget was used up.",
            labels=["service"],
        )
        for service in self._registry.services.values():
            for group in service.groups():
                shard = "" if group.shard is None else str(group.shard)
                breaker.add_metric([service.name, shard], group.breaker.state)
            exhausted.add_metric([service.name], service.retry_budget.exhausted)
        return [
            requests,
            duration,
            limited,
            retries,
            in_flight,
            healthy,
            upstream_requests,
            upstream_duration,
            ejections,
            breaker,
            exhausted,
        ]


class GatewayMetrics:
    def __init__(self, registry: Registry) -> None:
        self.registry = CollectorRegistry()
        self._routes: dict[str, RouteMetrics] = {}
        self.registry.register(_Collector(self._routes, registry))

    def route(self, label: str) -> RouteMetrics:
        """The metrics of one route label, created once and kept by the caller."""
        found = self._routes.get(label)
        if found is None:
            found = self._routes[label] = RouteMetrics(label)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
