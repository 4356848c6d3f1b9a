"""The accounts service's exception tree; `entrypoints/http.py` maps it to problem types."""

from __future__ import annotations

__all__ = [
    "AccountNotFound",
    "AccountsError",
    "CurrencyMismatch",
    "InvalidAmount",
    "NotAllowed",
]


class AccountsError(Exception):
    """Base of every error a use case raises on purpose."""


class AccountNotFound(AccountsError):
    """No such account, or one the caller may not see (the two are indistinguishable)."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} not found")
        self.account_id = account_id


class CurrencyMismatch(AccountsError):
    def __init__(self, account_currency: str, given: str) -> None:
        super().__init__(f"the account holds {account_currency}, not {given}")


class InvalidAmount(AccountsError):
    pass


class NotAllowed(AccountsError):
    """The caller lacks a permission the use case needs."""

    def __init__(self, permission: str) -> None:
        super().__init__(f"this needs the permission {permission!r}")
        self.permission = permission
