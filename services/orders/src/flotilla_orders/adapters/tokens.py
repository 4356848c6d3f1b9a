"""What the outbound clients send besides the request: this service's own access token.
(The trace context goes with every call by itself: the kit's HTTP client and gRPC
interceptors add it.)"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NoTokens", "TokenSource"]


class TokenSource(Protocol):
    """This service's own access token (the kit's `ServiceTokenProvider`)."""

    async def token(self) -> str: ...


class NoTokens:
    """An instance without TLS has no identity to prove: every call that needs one fails
    as if the dependency were down (nothing is sent)."""

    async def token(self) -> str:
        raise RuntimeError("TLS is not configured, so this instance has no identity")
