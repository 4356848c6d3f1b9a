"""A person who can sign in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["User"]


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    password_hash: str
    roles: tuple[str, ...]
    created_at: datetime
    # Declared by the seed file (provisioning).
    disabled: bool = False
    # Set by an administrator (incident response); the seed never clears it.
    locked: bool = False

    @property
    def may_sign_in(self) -> bool:
        return not (self.disabled or self.locked)
