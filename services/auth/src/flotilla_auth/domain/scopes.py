"""OAuth 2.0 scopes (RFC 6749 section 3.3): a space-separated list of scope tokens."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["format_scope", "parse_scope"]

# scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): printable ASCII without space, `"` and `\`.
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
_MAX_SCOPES = 64
_MAX_SCOPE_TOKEN = 128


def parse_scope(raw: str | None) -> tuple[str, ...] | None:
    """The scope tokens in request order without duplicates; None when malformed."""
    if raw is None:
        return ()
    tokens: list[str] = []
    for token in raw.split(" "):
        if not token:
            continue  # tolerate doubled spaces; clients build these strings by hand
        if len(token) > _MAX_SCOPE_TOKEN or not _SCOPE_TOKEN.match(token):
            return None
        if token not in tokens:
            tokens.append(token)
    if len(tokens) > _MAX_SCOPES:
        return None
    return tuple(tokens)


def format_scope(tokens: Iterable[str]) -> str:
    return " ".join(tokens)
