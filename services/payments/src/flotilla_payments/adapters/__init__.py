"""Adapters: the SQL transfer log, the ledger over gRPC, metrics, time, fault injection."""

from flotilla_payments.adapters.tables import metadata
from flotilla_payments.adapters.unit_of_work import SqlUnitOfWorkFactory

__all__ = ["SqlUnitOfWorkFactory", "metadata"]
