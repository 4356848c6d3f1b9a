"""The gateway's exception tree; the dispatcher maps each to a problem response."""

from __future__ import annotations

__all__ = [
    "GatewayError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamReset",
    "UpstreamTimeout",
]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class UpstreamError(GatewayError):
    """An upstream instance did not give a usable response."""


class UpstreamConnectError(UpstreamError):
    """No connection could be opened; the request never left the gateway (502, retryable)."""


class UpstreamReset(UpstreamError):
    """The connection closed before the response was complete (502).

    `response_started` says whether any byte of a response arrived, `reused` whether the
    connection had carried a request before: a reused connection that fails before any
    byte came back was most likely closed by the upstream while idle, so the upstream
    never saw the request.
    """

    def __init__(self, message: str, *, response_started: bool, reused: bool) -> None:
        super().__init__(message)
        self.response_started = response_started
        self.reused = reused

    @property
    def stale(self) -> bool:
        return self.reused and not self.response_started


class UpstreamTimeout(UpstreamError):
    """No complete response within the route's timeout (504, not retried)."""


class UpstreamProtocolError(UpstreamError):
    """The upstream answered with something that is not acceptable HTTP/1.1 (502)."""
