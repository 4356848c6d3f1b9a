"""The data layer every service uses: SQLite (default) or PostgreSQL, one API.

SQLAlchemy owns the schema (tables, Alembic migrations) and writes the SQL: repositories
declare their statements once, as `Query(<Core statement>)` at module level, and run them
in a `Transaction` (`all`, `first`, `scalar`, `execute`, `execute_many`, `savepoint`).
Underneath, SQLite runs through `sqlite3` on the event loop's thread and PostgreSQL
through asyncpg; both raise the same errors (`UniqueViolation`, `CheckViolation`, ...).
A `UnitOfWork` is a transaction, rolled back unless committed, with the service's
repositories on it.
"""

from flotilla_kit.db._database import Database, UnitOfWork
from flotilla_kit.db._errors import (
    CheckViolation,
    DatabaseBusy,
    DatabaseError,
    DatabaseUnavailable,
    ForeignKeyViolation,
    IntegrityViolation,
    TextNotStorable,
    UniqueViolation,
)
from flotilla_kit.db._query import Query, Row
from flotilla_kit.db._transaction import Transaction
from flotilla_kit.db._types import NAMING_CONVENTION, UtcDateTime, is_sqlite

__all__ = [
    "NAMING_CONVENTION",
    "CheckViolation",
    "Database",
    "DatabaseBusy",
    "DatabaseError",
    "DatabaseUnavailable",
    "ForeignKeyViolation",
    "IntegrityViolation",
    "Query",
    "Row",
    "TextNotStorable",
    "Transaction",
    "UniqueViolation",
    "UnitOfWork",
    "UtcDateTime",
    "is_sqlite",
]
