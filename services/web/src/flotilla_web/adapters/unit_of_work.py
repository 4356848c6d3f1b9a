"""The web unit of work: the kit's transaction with the session store on it."""

from __future__ import annotations

from typing import Self

from flotilla_kit.db import Database, UnitOfWork
from flotilla_web.adapters.sessions import SqlSessions

__all__ = ["SqlUnitOfWorkFactory", "SqlWebUnitOfWork"]


class SqlWebUnitOfWork(UnitOfWork):
    sessions: SqlSessions

    async def __aenter__(self) -> Self:
        # On SQLite the kit queues this process's writers in order (flotilla_kit.db).
        await super().__aenter__()
        self.sessions = SqlSessions(self.transaction)
        return self


class SqlUnitOfWorkFactory:
    """Opens units of work on one database; `write=False` for reads."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def __call__(self, *, write: bool = True) -> SqlWebUnitOfWork:
        return SqlWebUnitOfWork(self.database, write=write)
