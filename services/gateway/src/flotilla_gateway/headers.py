"""Which header fields cross the gateway, in each direction, and which it owns.

Looked up once per field with the lower-cased name; a name that is not in a table and has
no spoofable prefix is passed through untouched (original spelling kept).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = [
    "HOP_BY_HOP",
    "REQUEST_FIELDS",
    "RESPONSE_FIELDS",
    "SPOOFABLE_PREFIXES",
    "connection_tokens",
    "drop_nominated",
]

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Identity and client-address headers only the gateway may set: a client that sends them
# is trying to speak for someone else.
SPOOFABLE_PREFIXES: Final = (b"x-user-", b"x-forwarded-")
_SPOOFABLE_NAMES: Final = frozenset({b"forwarded", b"x-real-ip"})

# What the request reader does with a field (values of REQUEST_FIELDS).
DROP: Final = 0
CONNECTION: Final = 1
CONTENT_LENGTH: Final = 2
HOST: Final = 3
AUTHORIZATION: Final = 4
REQUEST_ID: Final = 5
TRACEPARENT: Final = 6
TRACESTATE: Final = 7
EXPECT: Final = 8

REQUEST_FIELDS: Final[dict[bytes, int]] = {
    **dict.fromkeys(HOP_BY_HOP, DROP),
    **dict.fromkeys(_SPOOFABLE_NAMES, DROP),
    b"connection": CONNECTION,
    # The body is forwarded de-chunked, so the gateway writes its own Content-Length.
    b"content-length": CONTENT_LENGTH,
    # The upstream gets its own authority as Host; the client's goes in X-Forwarded-Host.
    b"host": HOST,
    b"authorization": AUTHORIZATION,
    b"x-request-id": REQUEST_ID,
    b"traceparent": TRACEPARENT,
    # Kept only together with a valid traceparent (W3C trace context, section 3.3).
    b"tracestate": TRACESTATE,
    # Answered by the gateway (100 Continue); the upstream gets the whole body at once.
    b"expect": EXPECT,
}

# What the upstream client does with a response field (values of RESPONSE_FIELDS).
RESPONSE_FIELDS: Final[dict[bytes, int]] = {
    **dict.fromkeys(HOP_BY_HOP, DROP),
    b"connection": CONNECTION,
    # Re-framed by the gateway with its own Content-Length.
    b"content-length": CONTENT_LENGTH,
    # The gateway returns the request id it chose, once.
    b"x-request-id": DROP,
    # Names the upstream's software; nothing a client needs.
    b"server": DROP,
}


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """The field names a Connection header nominates as hop-by-hop (RFC 9110 7.6.1)."""
    return frozenset(
        token for token in (part.strip().lower() for part in value.split(b",")) if token
    )


# Connection options that name no header field of their own worth removing.
_OPTIONS: Final = frozenset({b"close", b"keep-alive", b"upgrade"})


def drop_nominated(lines: Iterable[bytes], tokens: frozenset[bytes]) -> list[bytes]:
    """`lines` (rendered `name: value\\r\\n`) without the fields named in `tokens`."""
    names = tokens - _OPTIONS
    if not names:
        return list(lines)
    return [line for line in lines if line.split(b":", 1)[0].strip().lower() not in names]
