"""Persistence of the ledger (SQLAlchemy Core tables and repositories), the coordinator
client and the participant's metrics."""

from flotilla_accounts.adapters.coordinator import HttpCoordinator
from flotilla_accounts.adapters.metrics import PrometheusParticipantMetrics
from flotilla_accounts.adapters.repository import SqlBranches, SqlLedger, SqlLocalTransfers
from flotilla_accounts.adapters.tables import metadata

__all__ = [
    "HttpCoordinator",
    "PrometheusParticipantMetrics",
    "SqlBranches",
    "SqlLedger",
    "SqlLocalTransfers",
    "metadata",
]
