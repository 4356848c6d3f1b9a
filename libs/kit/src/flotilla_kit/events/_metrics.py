"""The counters of the outbox relay and the consumers, in a registry a service exposes
at `/metrics` (or a registry of their own, when nobody serves one)."""

from __future__ import annotations

import enum

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["EventMetrics", "Outcome"]


class Outcome(enum.StrEnum):
    """What became of one delivery of an event to a consumer."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # already in the inbox: no effect
    RETRIED = "retried"  # the handler failed; redelivered after a delay
    DEAD_LETTERED = "dead_lettered"


class EventMetrics:
    """One per process and registry: every relay and consumer of the process shares it
    (a registry refuses the same metric twice)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.consumed = Counter(
            "flotilla_events_consumed",
            "Events a consumer received, by outcome: applied, duplicate (already in the "
            "inbox), retried (handler failed; redelivered later), dead_lettered.",
            ["consumer", "outcome"],
            registry=self.registry,
        )
        self.published = Counter(
            "flotilla_outbox_published",
            "Outbox rows the relay published and JetStream acknowledged.",
            ["service"],
            registry=self.registry,
        )
        self.publish_errors = Counter(
            "flotilla_outbox_publish_errors",
            "Relay passes that failed on broker or database trouble (each is retried).",
            ["service"],
            registry=self.registry,
        )
        self.backlog = Gauge(
            "flotilla_outbox_backlog",
            "Outbox rows not published yet, as of the relay's last pass.",
            ["service"],
            registry=self.registry,
        )

    def consumed_one(self, consumer: str, outcome: Outcome) -> None:
        self.consumed.labels(consumer, outcome.value).inc()

    def published_some(self, service: str, count: int) -> None:
        self.published.labels(service).inc(count)

    def publish_failed(self, service: str) -> None:
        self.publish_errors.labels(service).inc()

    def backlog_is(self, service: str, count: int) -> None:
        self.backlog.labels(service).set(count)
