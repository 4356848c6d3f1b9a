"""What the outbound clients send besides the request: this service's own access token,
and the trace context."""

from __future__ import annotations

from typing import Protocol

from flotilla_kit.context import current_context

__all__ = ["NoTokens", "TokenSource", "trace_headers"]


class TokenSource(Protocol):
    """This service's own access token (the kit's `ServiceTokenProvider`)."""

    async def token(self) -> str: ...


class NoTokens:
    """An instance without TLS has no identity to prove: every call that needs one fails
    as if the dependency were down (nothing is sent)."""

    async def token(self) -> str:
        raise RuntimeError("TLS is not configured, so this instance has no identity")


def trace_headers() -> dict[str, str]:
    """The W3C trace context of the work in hand (a request, or the saga it started), for
    the next service to carry on; empty for work no request started (recovery)."""
    context = current_context()
    return {"traceparent": context.traceparent()} if context is not None else {}
