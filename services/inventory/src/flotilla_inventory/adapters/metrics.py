"""The inventory's business metrics, in the app's Prometheus registry: reservations by
operation and outcome, gRPC method latency, sweeper expirations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from flotilla_kit.metrics import LATENCY_BUCKETS

__all__ = ["PrometheusInventoryMetrics"]


class PrometheusInventoryMetrics:
    def __init__(self, registry: CollectorRegistry, *, service: str) -> None:
        self._service = service
        self._reservations = Counter(
            "flotilla_inventory_reservations",
            "Reservation calls answered, by operation (reserve, commit, release) and outcome "
            "(the state answered, or the refusal of a refused Reserve).",
            ["service", "operation", "outcome"],
            registry=registry,
        )
        self._expired = Counter(
            "flotilla_inventory_sweeper_expired",
            "HELD reservations past their deadline that this instance's sweeper expired.",
            ["service"],
            registry=registry,
        ).labels(service)
        self._grpc = Histogram(
            "flotilla_grpc_server_handling_seconds",
            "Time to answer a gRPC request, by method (per message on a stream).",
            ["service", "method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # Label lookups cost more than the observation: keep the children.
        self._answered: dict[tuple[str, str], Counter] = {}
        self._timings: dict[tuple[str, str], Histogram] = {}

    def answered(self, operation: str, outcome: str) -> None:
        key = (operation, outcome)
        counter = self._answered.get(key)
        if counter is None:
            counter = self._answered[key] = self._reservations.labels(
                self._service, operation, outcome
            )
        counter.inc()

    def expired(self, count: int) -> None:
        self._expired.inc(count)

    def grpc_handled(self, method: str, code: str, seconds: float) -> None:
        key = (method, code)
        histogram = self._timings.get(key)
        if histogram is None:
            histogram = self._timings[key] = self._grpc.labels(self._service, method, code)
        histogram.observe(seconds)
