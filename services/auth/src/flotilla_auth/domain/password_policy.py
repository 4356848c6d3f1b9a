"""What a password set by an administrator or a seed file must be.

Length first (NIST SP 800-63B: at least 12 here, no composition rules), then the obvious
guesses: the username itself, and passwords that appear in public breach lists. The list is
passed in (the adapters load the bundled file), so this stays free of I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "PasswordPolicy",
    "PasswordRule",
]

MIN_PASSWORD_LENGTH = 12
# argon2 pre-hashes any length cheaply; the cap only keeps absurd inputs out of the store.
MAX_PASSWORD_LENGTH = 1024
# A name this short inside a password is chance, not a weakness ("al" in "cymbal..."); a
# password equal to the name is refused whatever its length.
_MIN_NAME_TO_MATCH = 3


class PasswordRule(enum.StrEnum):
    LENGTH = "length"
    CONTAINS_USERNAME = "contains-username"
    COMMON_PASSWORD = "common-password"  # noqa: S105 - a rule's name, not a password

    def explain(self) -> str:
        return _EXPLANATIONS[self]


_EXPLANATIONS = {
    PasswordRule.LENGTH: (
        f"The password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters."
    ),
    PasswordRule.CONTAINS_USERNAME: "The password must not be or contain the username.",
    PasswordRule.COMMON_PASSWORD: (
        "The password is on a list of common or breached passwords; choose another."
    ),
}


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    common: frozenset[str] = field(repr=False)

    @classmethod
    def with_common(cls, passwords: Iterable[str]) -> PasswordPolicy:
        return cls(frozenset(p.strip().lower() for p in passwords if p.strip()))

    def violation(self, password: str, username: str) -> PasswordRule | None:
        """The first rule `password` breaks for `username` (normalised), or None."""
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            return PasswordRule.LENGTH
        lowered, name = password.lower(), username.lower()
        if name and (lowered == name or (len(name) >= _MIN_NAME_TO_MATCH and name in lowered)):
            return PasswordRule.CONTAINS_USERNAME
        if lowered in self.common:
            return PasswordRule.COMMON_PASSWORD
        return None
