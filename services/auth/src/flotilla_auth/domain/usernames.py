"""How a username is compared and stored: one spelling per person."""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_USERNAME_LENGTH", "is_valid_username", "normalise_username"]

MAX_USERNAME_LENGTH = 64


def normalise_username(raw: str) -> str:
    """The stored form: NFKC, stripped, lower-case.

    NFKC first, so that look-alike compatibility characters (full-width letters, ligatures)
    cannot register a second account that reads the same as an existing one.
    """
    return unicodedata.normalize("NFKC", raw).strip().lower()


def is_valid_username(normalised: str) -> bool:
    """A stored username is 1..64 printable characters without whitespace."""
    if not 0 < len(normalised) <= MAX_USERNAME_LENGTH:
        return False
    return all(ch.isprintable() and not ch.isspace() for ch in normalised)
