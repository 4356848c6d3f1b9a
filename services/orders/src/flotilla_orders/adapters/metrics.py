"""The orders service's business metrics, on the app's Prometheus registry (`/metrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["OrdersMetrics"]

# A saga takes milliseconds when everything answers; minutes when a dependency is down.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class OrdersMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sagas = Counter(
            "flotilla_orders_sagas",
            "Orders finished, by state (CONFIRMED, CANCELLED) and cancel reason.",
            ["state", "reason"],
            registry=registry,
        )
        self.saga_duration = Histogram(
            "flotilla_orders_saga_duration_seconds",
            "From the order being placed to CONFIRMED or CANCELLED.",
            ["state"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.steps = Counter(
            "flotilla_orders_saga_steps",
            "Runs of a saga step, by step and result (advanced, retry, lease_lost).",
            ["step", "result"],
            registry=registry,
        )
        self.pending = Gauge(
            "flotilla_orders_unfinished_orders",
            "Orders whose saga has not finished, as of the last recovery tick.",
            registry=registry,
        )
        self.recovery = Counter(
            "flotilla_orders_recovery_actions",
            "What recovery did with the orders it claimed: the step it resumed, "
            "finished, retry_scheduled.",
            ["kind"],
            registry=registry,
        )
        self.refused = Counter(
            "flotilla_orders_refused",
            "Orders refused before anything was written, by the refusal.",
            ["problem"],
            registry=registry,
        )
        self.refunds = Counter(
            "flotilla_orders_refunds",
            "Refunds of confirmed orders that ended, by outcome (refunded, refused).",
            ["outcome"],
            registry=registry,
        )
        self.calls = Counter(
            "flotilla_orders_remote_calls",
            "Calls to inventory, payments and accounts, by method and result.",
            ["service", "method", "result"],
            registry=registry,
        )

    def saga_finished(self, state: str, reason: str | None, seconds: float) -> None:
        self.sagas.labels(state, reason or "").inc()
        self.saga_duration.labels(state).observe(seconds)

    def step_result(self, step: str, result: str) -> None:
        self.steps.labels(step, result).inc()

    def unfinished(self, count: int) -> None:
        self.pending.set(count)

    def recovery_action(self, kind: str) -> None:
        self.recovery.labels(kind).inc()

    def order_refused(self, problem: str) -> None:
        self.refused.labels(problem).inc()

    def refund_finished(self, outcome: str) -> None:
        self.refunds.labels(outcome).inc()

    def remote_call(self, service: str, method: str, result: str) -> None:
        self.calls.labels(service, method, result).inc()
