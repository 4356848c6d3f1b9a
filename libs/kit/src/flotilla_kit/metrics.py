"""Prometheus metrics: RED (rate, errors, duration) per route, served at `/metrics`.

Labels use the route template (`/api/v1/accounts/{account_id}`), never the raw path, so the
number of series stays bounded whatever clients send.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["HttpMetrics", "metrics_endpoint"]

# Buckets for an API served on loopback: sub-millisecond to a few seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class HttpMetrics:
    """The RED metrics of one service process, in its own registry."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "flotilla_http_requests",
            "HTTP requests served, by route and status code.",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "flotilla_http_request_duration_seconds",
            "Time to serve an HTTP request, by route.",
            ["service", "method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "flotilla_http_requests_in_flight",
            "HTTP requests being served now.",
            ["service"],
            registry=self.registry,
        )
        self.service = service
        self._in_flight = self.in_flight.labels(service)
        # `labels()` builds and hashes a key per call; the children, looked up once each
        # (routes are templates and statuses few, so these stay small).
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def started(self) -> None:
        self._in_flight.inc()

    def finished(self, method: str, route: str, status: int, seconds: float) -> None:
        self._in_flight.dec()
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self._counters[method, route, status] = self.requests.labels(
                self.service, method, route, str(status)
            )
        counter.inc()
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self._histograms[method, route] = self.duration.labels(
                self.service, method, route
            )
        histogram.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_endpoint(metrics: HttpMetrics) -> object:
    async def endpoint(_: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return endpoint
