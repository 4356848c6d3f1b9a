"""Where a browser may be sent after logging in: only a path of this site."""

from __future__ import annotations

from flotilla_kit.text import refusal

__all__ = ["MAX_NEXT", "safe_next"]

MAX_NEXT = 1000
# Pages a user must not be sent back to after logging in.
_NEVER = ("/login", "/logout")


def safe_next(value: str | None) -> str | None:
    """`value` when it is a path of this site (`/orders/1?x=2`), else None.

    Refused: anything with a scheme or a host (`https://evil`, `//evil`, `/\\evil`, which
    browsers read as `//evil`), a path not starting with `/`, a backslash or a control
    character anywhere, the login and logout pages, and anything over MAX_NEXT characters.
    """
    if not value or len(value) > MAX_NEXT:
        return None
    if not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or refusal(value) is not None or " " in value:
        return None
    path = value.split("?", 1)[0].split("#", 1)[0]
    if path in _NEVER:
        return None
    return value
