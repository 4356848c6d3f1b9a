"""The bundled list of common and breached passwords, as the password policy uses it."""

from __future__ import annotations

import functools
from importlib import resources

from flotilla_auth.domain.password_policy import PasswordPolicy

__all__ = ["default_password_policy", "load_common_passwords"]


def load_common_passwords() -> list[str]:
    text = resources.files(__package__).joinpath("common_passwords.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@functools.cache
def default_password_policy() -> PasswordPolicy:
    return PasswordPolicy.with_common(load_common_passwords())
