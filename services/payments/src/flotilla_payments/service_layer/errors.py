"""The payments service's exception tree; `entrypoints/http.py` maps it to problem types."""

from __future__ import annotations

__all__ = [
    "AccountNotFound",
    "IdempotencyKeyRequired",
    "IdempotencyKeyReused",
    "InvalidCursor",
    "InvalidTransfer",
    "NotAllowed",
    "PaymentsError",
    "SameAccount",
    "TransferNotFound",
]


class PaymentsError(Exception):
    """Base of every error a use case raises on purpose."""


class NotAllowed(PaymentsError):
    """The caller lacks a permission the use case needs."""

    def __init__(self, permission: str) -> None:
        super().__init__(f"this needs the permission {permission!r}")
        self.permission = permission


class AccountNotFound(PaymentsError):
    """An account id that is not one of ours, or lives on a shard we do not know."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} not found")
        self.account_id = account_id


class SameAccount(PaymentsError):
    def __init__(self) -> None:
        super().__init__("the source and the destination are the same account")


class InvalidTransfer(PaymentsError):
    """A request the HTTP layer should have refused already (amount, currency)."""


class IdempotencyKeyRequired(PaymentsError):
    def __init__(self) -> None:
        super().__init__("a transfer needs an Idempotency-Key header, so it can be retried safely")


class IdempotencyKeyReused(PaymentsError):
    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was already used for a different transfer")


class TransferNotFound(PaymentsError):
    """No such transfer, or one the caller may not see (the two are indistinguishable)."""

    def __init__(self, transfer_id: str) -> None:
        super().__init__(f"transfer {transfer_id!r} not found")
        self.transfer_id = transfer_id


class InvalidCursor(PaymentsError):
    def __init__(self) -> None:
        super().__init__("`after` must be the id of one of your transfers")
