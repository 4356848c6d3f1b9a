"""Persistence of the inventory (SQLAlchemy Core tables and repositories, the unit of
work), the audit trail, stock events and the service's metrics."""

from flotilla_inventory.adapters.metrics import PrometheusInventoryMetrics
from flotilla_inventory.adapters.products import SqlProducts
from flotilla_inventory.adapters.reservations import SqlReservations
from flotilla_inventory.adapters.tables import metadata
from flotilla_inventory.adapters.unit_of_work import SqlInventoryUnitOfWork, SqlUnitOfWorkFactory

__all__ = [
    "PrometheusInventoryMetrics",
    "SqlInventoryUnitOfWork",
    "SqlProducts",
    "SqlReservations",
    "SqlUnitOfWorkFactory",
    "metadata",
]
