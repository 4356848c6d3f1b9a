"""Persistence of the ledger (SQLAlchemy Core tables and the repository)."""

from flotilla_accounts.adapters.repository import SqlLedger
from flotilla_accounts.adapters.tables import metadata

__all__ = ["SqlLedger", "metadata"]
