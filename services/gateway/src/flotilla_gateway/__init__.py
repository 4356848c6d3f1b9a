"""flotilla_gateway: the single HTTPS entry point of a Flotilla system.

A lean asyncio HTTP/1.1 reverse proxy (httptools on uvloop, not ASGI): routes by a
per-operation access policy (deny by default), checks access tokens and permissions,
balances each request to the least busy healthy instance (of the request's shard, for
the sharded ledger) over pooled keep-alive connections, and serves probes, metrics, the
policy and the merged OpenAPI.
"""

from flotilla_gateway.bootstrap import build_gateway
from flotilla_gateway.gateway import Gateway
from flotilla_gateway.settings import GatewaySettings

__all__ = ["Gateway", "GatewaySettings", "build_gateway"]
__version__ = "0.1.0"
