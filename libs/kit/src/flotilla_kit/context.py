"""Per-request context (request id, W3C trace context) carried in contextvars.

The logging processors read it so every log line of a request names it, and outbound
clients read it to pass it on.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = [
    "RequestContext",
    "current_context",
    "current_request_id",
    "new_ids",
    "new_request_id",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
    "reset_context",
    "set_context",
    "valid_request_id",
]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    trace_id: str
    span_id: str
    sampled: bool = True

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


_current: ContextVar[RequestContext | None] = ContextVar("flotilla_request", default=None)


def current_context() -> RequestContext | None:
    return _current.get()


def current_request_id() -> str | None:
    ctx = _current.get()
    return ctx.request_id if ctx else None


def set_context(ctx: RequestContext) -> object:
    return _current.set(ctx)


def reset_context(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


# Request, trace and span ids name things; they guard nothing, so they come from a fast
# PRNG (seeded from the OS at start) rather than a system call per id. W3C Trace Context
# asks for randomness, not for secrecy; an all-zero id is invalid there, hence the `| 1`.
_ids = random.Random()  # noqa: S311 - ids, not secrets (see above)


_getrandbits = _ids.getrandbits
# Forces the last bit of the trace id (bits 64..191) and of the span id (bits 0..63).
_NONZERO = 1 << 64 | 1


def new_request_id() -> str:
    return "%032x" % (_getrandbits(128) | 1)


def new_ids() -> tuple[str, str, str]:
    """A new request id, trace id and span id at once, from one PRNG call (the gateway
    asks for all three on every request)."""
    block = "%080x" % (_getrandbits(320) | _NONZERO)
    return block[:32], block[32:64], block[64:]


def valid_request_id(value: str | None) -> str | None:
    """A client-supplied request id is kept only if it is short and harmless in logs."""
    if value and _REQUEST_ID.match(value):
        return value
    return None


def parse_traceparent(value: str | None) -> tuple[str, bool] | None:
    """(trace id, sampled) from a W3C `traceparent` header, or None when absent or invalid."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())
    if not match or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return match.group(1), int(match.group(3), 16) & 1 == 1


def new_span_id() -> str:
    return "%016x" % (_getrandbits(64) | 1)


def new_trace_id() -> str:
    return "%032x" % (_getrandbits(128) | 1)
