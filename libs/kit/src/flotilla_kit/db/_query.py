"""Statements written once with SQLAlchemy Core and compiled once per dialect.

A `Query` wraps a Core statement (or a function of the dialect name that builds one, for
the few statements whose SQL differs: `INSERT ... ON CONFLICT` constructs). The first
time a transaction runs it on a dialect, it is compiled to that dialect's SQL text, its
parameters in driver order with each type's bind processor, and a row type (a named
tuple of the statement's columns) with each type's result processor. Every later run is
a driver call: no statement objects built, no cache keys computed, no ORM.

Variables are `bindparam("name")` and are passed by name: `await tx.all(Q, id=...)`.
Literal values written into the statement become parameters with that value.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ClauseElement

__all__ = ["Compiled", "Query", "Row"]

Row = Any  # a named tuple: fields by column key, also by position
Processor = Callable[[Any], Any]
_MISSING = object()


class _Param(NamedTuple):
    name: str
    default: Any  # _MISSING: the caller must pass it
    process: Processor | None


class Compiled:
    """One statement on one dialect: what the drivers are given."""

    __slots__ = ("_params", "_process_rows", "_row", "columns", "sql")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler):  # pragma: no cover - DDL is not a query
            raise TypeError(f"not a SQL statement: {statement!r}")
        self.sql: str = compiled.string
        names: Sequence[str] = compiled.positiontup or ()
        params: list[_Param] = []
        for name in names:
            bind = compiled.binds[name]
            if bind.expanding:
                raise ValueError(f"expanding parameters are not supported: {name!r}")
            default = _MISSING if bind.required else bind.effective_value
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            params.append(_Param(name, default, process))
        self._params = tuple(params)
        columns = list(getattr(statement, "exported_columns", ()) or ())
        self.columns = tuple(str(c.key) for c in columns)
        self._row: type[tuple[Any, ...]] | None = None
        # (position, processor) of the columns that need one: most need none.
        self._process_rows: tuple[tuple[int, Processor], ...] = ()
        if columns:
            try:
                self._row = namedtuple("Row", self.columns)  # type: ignore[misc]
            except ValueError as exc:
                raise ValueError(
                    f"give every column a distinct name (.label()): {self.columns}"
                ) from exc
            self._process_rows = tuple(
                (position, processor)
                for position, c in enumerate(columns)
                if (processor := c.type.dialect_impl(dialect).result_processor(dialect, None))
            )

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The driver's positional arguments for these named values."""
        out = []
        for name, default, process in self._params:
            value = values.get(name, default)
            if value is _MISSING:
                raise TypeError(f"missing query parameter {name!r} for: {self.sql}")
            out.append(process(value) if process is not None and value is not None else value)
        return tuple(out)

    def rows(self, raw: Iterable[Any]) -> list[Row]:
        make = self._row
        if make is None:  # text() without .columns(): plain tuples
            return [tuple(r) for r in raw]
        processors = self._process_rows
        build = make._make  # type: ignore[attr-defined]
        if not processors:
            return [build(r) for r in raw]
        rows = []
        for r in raw:
            values = list(r)
            for position, process in processors:
                value = values[position]
                if value is not None:
                    values[position] = process(value)
            rows.append(build(values))
        return rows


class Query:
    """A statement, compiled the first time it runs on each dialect."""

    __slots__ = ("_build", "_compiled")

    def __init__(self, statement: Executable | Callable[[str], Executable]) -> None:
        self._build = statement
        self._compiled: dict[str, Compiled] = {}

    def on(self, dialect: Dialect) -> Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            built = self._build(dialect.name) if callable(self._build) else self._build
            if isinstance(built, Insert) and not list(built.exported_columns):
                # Nobody reads a key back unless the statement says RETURNING: without this,
                # an INSERT into a table with a generated key returns it on PostgreSQL.
                built = built.inline()
            statement = built
            if not isinstance(statement, ClauseElement):  # pragma: no cover - typing says so
                raise TypeError(f"not a statement: {statement!r}")
            compiled = self._compiled[dialect.name] = Compiled(statement, dialect)
        return compiled
