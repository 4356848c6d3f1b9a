"""The coordinator's business metrics, on the app's Prometheus registry (`/metrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flotilla_payments.domain import TransferPath

__all__ = ["PaymentsMetrics"]

# A decision takes milliseconds; phase two, when a participant is down, minutes.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class PaymentsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.transfers = Counter(
            "flotilla_payments_transfers",
            "Transfers finished, by path (local, 2pc) and outcome (committed, refused, aborted).",
            ["path", "outcome"],
            registry=registry,
        )
        self.prepare = Histogram(
            "flotilla_payments_prepare_duration_seconds",
            "Phase one of a cross-shard transfer: both Prepare calls, in parallel.",
            buckets=_BUCKETS,
            registry=registry,
        )
        self.decision = Histogram(
            "flotilla_payments_decision_duration_seconds",
            "From the request to the durable decision (the final state, for a local transfer).",
            ["path"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.phase_two = Histogram(
            "flotilla_payments_phase_two_duration_seconds",
            "From the durable decision to both participants' acknowledgement.",
            buckets=_BUCKETS,
            registry=registry,
        )
        self.unfinished = Gauge(
            "flotilla_payments_in_doubt_transfers",
            "Transfers not yet committed or aborted, as of the last recovery tick.",
            registry=registry,
        )
        # A count alone cannot tell a busy coordinator from a stuck one: the age can.
        self.oldest = Gauge(
            "flotilla_payments_oldest_in_doubt_transfer_age_seconds",
            "Age of the oldest transfer not yet committed or aborted (0: none), as of the "
            "last recovery tick.",
            registry=registry,
        )
        self.recovery = Counter(
            "flotilla_payments_recovery_actions",
            "What recovery did with the transfers it claimed, by kind.",
            ["kind"],
            registry=registry,
        )
        self.ledger_calls = Counter(
            "flotilla_payments_ledger_calls",
            "Calls to the ledger shards, by method and result "
            "(ok, unavailable, protocol_violation).",
            ["method", "result"],
            registry=registry,
        )

    def transfer_finished(self, path: TransferPath, outcome: str) -> None:
        self.transfers.labels(path.value, outcome).inc()

    def prepare_took(self, seconds: float) -> None:
        self.prepare.observe(seconds)

    def decision_took(self, path: TransferPath, seconds: float) -> None:
        self.decision.labels(path.value).observe(seconds)

    def phase_two_took(self, seconds: float) -> None:
        self.phase_two.observe(seconds)

    def in_doubt(self, count: int) -> None:
        self.unfinished.set(count)

    def oldest_in_doubt(self, age_s: float) -> None:
        self.oldest.set(age_s)

    def recovery_action(self, kind: str) -> None:
        self.recovery.labels(kind).inc()

    def ledger_call(self, method: str, result: str) -> None:
        self.ledger_calls.labels(method, result).inc()
