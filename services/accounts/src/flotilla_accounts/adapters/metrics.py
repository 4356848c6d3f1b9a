"""The participant's business metrics, in the app's Prometheus registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from flotilla_accounts.domain import Vote

__all__ = ["PrometheusParticipantMetrics"]


class PrometheusParticipantMetrics:
    def __init__(self, registry: CollectorRegistry, *, service: str, shard: int) -> None:
        labels = {"service": service, "shard": str(shard)}
        self._prepares = Counter(
            "flotilla_ledger_prepares",
            "2PC Prepare calls answered, by vote and refusal.",
            ["service", "shard", "vote", "refusal"],
            registry=registry,
        )
        self._commits = Counter(
            "flotilla_ledger_commits",
            "2PC Commit calls, by outcome (applied, repeated, refused).",
            ["service", "shard", "outcome"],
            registry=registry,
        )
        self._aborts = Counter(
            "flotilla_ledger_aborts",
            "2PC Abort calls, by outcome (released, tombstone, repeated, refused).",
            ["service", "shard", "outcome"],
            registry=registry,
        )
        self._transfers = Counter(
            "flotilla_ledger_local_transfers",
            "Same-shard transfers answered, by outcome and refusal.",
            ["service", "shard", "outcome", "refusal"],
            registry=registry,
        )
        self._recovery = Counter(
            "flotilla_ledger_recovery_actions",
            "What recovery did with in-doubt transfers (commit, abort, pending, error).",
            ["service", "shard", "action"],
            registry=registry,
        )
        self._in_doubt = Gauge(
            "flotilla_ledger_branches_in_doubt",
            "Branches PREPARED for longer than the in-doubt threshold (at the last recovery tick).",
            ["service", "shard"],
            registry=registry,
        ).labels(**labels)
        self._labels = labels

    def prepared(self, vote: Vote) -> None:
        refusal = vote.refusal.value if vote.refusal else ""
        self._prepares.labels(
            **self._labels, vote="yes" if vote.yes else "no", refusal=refusal
        ).inc()

    def committed(self, outcome: str) -> None:
        self._commits.labels(**self._labels, outcome=outcome).inc()

    def aborted(self, outcome: str) -> None:
        self._aborts.labels(**self._labels, outcome=outcome).inc()

    def transferred(self, vote: Vote, *, repeated: bool) -> None:
        outcome = "refused"
        if vote.yes:
            outcome = "repeated" if repeated else "applied"
        refusal = vote.refusal.value if vote.refusal else ""
        self._transfers.labels(**self._labels, outcome=outcome, refusal=refusal).inc()

    def recovered(self, action: str) -> None:
        self._recovery.labels(**self._labels, action=action).inc()

    def in_doubt(self, count: int) -> None:
        self._in_doubt.set(count)
