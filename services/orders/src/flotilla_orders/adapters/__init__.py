"""Adapters: the SQL order store, inventory over gRPC, payments and accounts over HTTPS,
metrics, time, fault injection."""

from flotilla_orders.adapters.tables import metadata
from flotilla_orders.adapters.unit_of_work import SqlUnitOfWorkFactory

__all__ = ["SqlUnitOfWorkFactory", "metadata"]
