"""A person (or service) that can sign in."""

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
    disabled: bool = False
