"""What a transaction raises, the same on SQLite and PostgreSQL: services catch these,
never a driver's own exceptions."""

from __future__ import annotations

__all__ = [
    "CheckViolation",
    "DatabaseBusy",
    "DatabaseError",
    "DatabaseUnavailable",
    "ForeignKeyViolation",
    "IntegrityViolation",
    "TextNotStorable",
    "UniqueViolation",
]


class DatabaseError(Exception):
    """Anything the database refused or could not do."""


class IntegrityViolation(DatabaseError):
    """A constraint refused the statement; the transaction can go on only after a rollback
    (or from a savepoint taken before the statement)."""


class UniqueViolation(IntegrityViolation):
    """A primary key or unique constraint: the row is there already."""


class CheckViolation(IntegrityViolation):
    """A CHECK constraint (a balance that would go below zero, say)."""


class ForeignKeyViolation(IntegrityViolation):
    """A row names another that does not exist."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached, or the connection broke: try again later."""


class DatabaseBusy(DatabaseError):
    """Another writer held the database longer than we were willing to wait."""


class TextNotStorable(DatabaseError):
    """A string the database cannot hold (a NUL for PostgreSQL, a lone surrogate for any):
    the input's fault, not the database's. Entrypoints refuse such text first (the kit's
    `text` rule); this is the last line, so that none reaches a client as a 500."""
