"""The auth service's unit of work: the kit's transaction with our repositories on it."""

from __future__ import annotations

from typing import Self

from flotilla_auth.adapters.audit_trail import SqlAuditTrail
from flotilla_auth.adapters.client_assertion_repository import SqlClientAssertionRepository
from flotilla_auth.adapters.login_throttle_repository import SqlLoginThrottleRepository
from flotilla_auth.adapters.refresh_token_repository import SqlRefreshTokenRepository
from flotilla_auth.adapters.signing_key_repository import SqlSigningKeyRepository
from flotilla_auth.adapters.user_repository import SqlUserRepository
from flotilla_kit.db import Database, UnitOfWork

__all__ = ["SqlAuthUnitOfWork", "SqlUnitOfWorkFactory"]


class SqlAuthUnitOfWork(UnitOfWork):
    users: SqlUserRepository
    refresh_tokens: SqlRefreshTokenRepository
    signing_keys: SqlSigningKeyRepository
    login_throttles: SqlLoginThrottleRepository
    client_assertions: SqlClientAssertionRepository
    audit: SqlAuditTrail

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.users = SqlUserRepository(self.transaction)
        self.refresh_tokens = SqlRefreshTokenRepository(self.transaction)
        self.signing_keys = SqlSigningKeyRepository(self.transaction)
        self.login_throttles = SqlLoginThrottleRepository(self.transaction)
        self.client_assertions = SqlClientAssertionRepository(self.transaction)
        self.audit = SqlAuditTrail(self.transaction)
        return self


class SqlUnitOfWorkFactory:
    """Opens units of work on one database; `write=False` for read-only work (on SQLite a
    reader does not take the write lock)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def __call__(self, *, write: bool = True) -> SqlAuthUnitOfWork:
        return SqlAuthUnitOfWork(self._database, write=write)
