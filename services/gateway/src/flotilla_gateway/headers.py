"""Which header fields cross the gateway, in each direction, and which it owns.

A name is classified once per spelling (lower-cased, looked up in a table, checked for a
dropped prefix) and the verdict remembered by `FieldKinds`, so a field costs one dict
lookup on the hot path. A name that is not in a table and has no dropped prefix is passed
through untouched (original spelling kept).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = [
    "CORS_PREFIX",
    "FIELD_KINDS_REMEMBERED",
    "HOP_BY_HOP",
    "NO_STORE",
    "PASS",
    "REQUEST_FIELDS",
    "REQUEST_KINDS",
    "RESPONSE_FIELDS",
    "RESPONSE_KINDS",
    "SECURITY_FIELDS",
    "SPOOFABLE_PREFIXES",
    "FieldKinds",
    "connection_tokens",
    "drop_nominated",
    "security_block",
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
PASS: Final = -1  # forwarded as it is
DROP: Final = 0
CONNECTION: Final = 1
CONTENT_LENGTH: Final = 2
HOST: Final = 3
AUTHORIZATION: Final = 4
REQUEST_ID: Final = 5
TRACEPARENT: Final = 6
TRACESTATE: Final = 7
EXPECT: Final = 8
CACHE_CONTROL: Final = 9
IDEMPOTENCY_KEY: Final = 10
TRANSFER_ENCODING: Final = 11
FORWARDED_FOR: Final = 12

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
    # Forwarded; marks a write as safe to retry on another instance.
    b"idempotency-key": IDEMPOTENCY_KEY,
    # Believed from trusted proxies only (`forwarding.TrustedProxies`), else dropped; the
    # gateway writes its own either way.
    b"x-forwarded-for": FORWARDED_FOR,
}

# Set by the gateway on every response it sends (`security_block`); a service's own
# values for these names are dropped, so each appears once.
_HSTS: Final = b"strict-transport-security: max-age=63072000; includeSubDomains\r\n"
_ALWAYS: Final = (
    b"x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\nx-frame-options: DENY\r\n"
)
# An API answer loads nothing; a page (the web service's, the API docs) loads the
# gateway's own scripts, styles and images and nothing inline: no 'unsafe-inline', no
# 'unsafe-eval', no other origin, forms posted only here, never framed.
_CSP: Final = b"content-security-policy: default-src 'none'; frame-ancestors 'none'\r\n"
PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_PAGE_CSP: Final = b"content-security-policy: " + PAGE_CSP.encode() + b"\r\n"
SECURITY_FIELDS: Final = frozenset(
    {
        b"strict-transport-security",
        b"x-content-type-options",
        b"referrer-policy",
        b"x-frame-options",
        b"content-security-policy",
    }
)
# CORS is off: no `Access-Control-*` field leaves the gateway, whoever set it.
CORS_PREFIX: Final = b"access-control-"
# Replaces a service's Cache-Control on routes whose answers must never be stored.
NO_STORE: Final = b"cache-control: no-store\r\n"


def security_block(*, tls: bool, page: bool) -> bytes:
    """The security header lines for one kind of response, rendered once at start.

    HSTS only over TLS (a browser ignores it on plain HTTP anyway, and it must never pin
    a host to HTTPS by accident); the page CSP for HTML pages, the API's for the rest.
    """
    return (_HSTS if tls else b"") + _ALWAYS + (_PAGE_CSP if page else _CSP)


# What the upstream client does with a response field (values of RESPONSE_FIELDS).
# Names starting with CORS_PREFIX are dropped too.
RESPONSE_FIELDS: Final[dict[bytes, int]] = {
    **dict.fromkeys(HOP_BY_HOP, DROP),
    **dict.fromkeys(SECURITY_FIELDS, DROP),
    # Passed on, or replaced by NO_STORE on the routes that need it.
    b"cache-control": CACHE_CONTROL,
    b"connection": CONNECTION,
    # Re-framed by the gateway with its own Content-Length.
    b"content-length": CONTENT_LENGTH,
    # The gateway returns the request id it chose, once.
    b"x-request-id": DROP,
    # Names the upstream's software; nothing a client needs.
    b"server": DROP,
}


# Spellings remembered per table; past that (a flood of made-up names) each is classified
# again, which is slower but bounded.
FIELD_KINDS_REMEMBERED: Final = 4096


class FieldKinds:
    """What to do with a header field, by the exact spelling of its name.

    `known.get(name)` is the hot path; on a miss, calling the object classifies the name
    (lower-cased, in `table`, else DROP for a dropped prefix, else PASS) and remembers it.
    """

    __slots__ = ("_drop_prefixes", "_table", "known")

    def __init__(self, table: dict[bytes, int], drop_prefixes: tuple[bytes, ...]) -> None:
        self._table = table
        self._drop_prefixes = drop_prefixes
        self.known: dict[bytes, int] = {}

    def __call__(self, name: bytes) -> int:
        lower = name.lower()
        kind = self._table.get(lower)
        if kind is None:
            kind = DROP if lower.startswith(self._drop_prefixes) else PASS
        if len(self.known) < FIELD_KINDS_REMEMBERED:
            self.known[name] = kind
        return kind


REQUEST_KINDS: Final = FieldKinds(REQUEST_FIELDS, SPOOFABLE_PREFIXES)
# Framing is the gateway's: Transfer-Encoding (hop-by-hop) is dropped but noted.
RESPONSE_KINDS: Final = FieldKinds(
    {**RESPONSE_FIELDS, b"transfer-encoding": TRANSFER_ENCODING}, (CORS_PREFIX,)
)


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
