"""The web service's adapters: the session store (SQLAlchemy Core on the kit's
`flotilla_kit.db`, SQLite and PostgreSQL alike), the gateway client (httpx), the reader
of the auth service's tokens."""

from flotilla_web.adapters.gateway import GatewayClient, GatewayUserApi
from flotilla_web.adapters.sessions import SqlSessions, lookup_key
from flotilla_web.adapters.tables import metadata
from flotilla_web.adapters.tokens import VerifiedTokens
from flotilla_web.adapters.unit_of_work import SqlUnitOfWorkFactory, SqlWebUnitOfWork

__all__ = [
    "GatewayClient",
    "GatewayUserApi",
    "SqlSessions",
    "SqlUnitOfWorkFactory",
    "SqlWebUnitOfWork",
    "VerifiedTokens",
    "lookup_key",
    "metadata",
]
