"""The accounts service's exception tree; `entrypoints/http.py` maps it to problem types and
`entrypoints/grpc.py` to gRPC status codes."""

from __future__ import annotations

__all__ = [
    "AccountNotFound",
    "AccountsError",
    "BranchConflict",
    "BranchNotAbortable",
    "BranchNotCommittable",
    "CoordinatorBug",
    "CoordinatorUnreachable",
    "CurrencyMismatch",
    "InvalidAccountId",
    "InvalidAmount",
    "InvalidBranchRef",
    "InvalidCursor",
    "NotAllowed",
    "TransferConflict",
    "WrongShard",
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


class InvalidAccountId(AccountsError):
    """An account id given in advance (seeding) that is not one of this shard's."""

    def __init__(self, account_id: str, shard: int) -> None:
        super().__init__(f"{account_id!r} is not an account id of shard {shard}")


class InvalidCursor(AccountsError):
    def __init__(self) -> None:
        super().__init__("the cursor is not one this service handed out")


class NotAllowed(AccountsError):
    """The caller lacks a permission the use case needs."""

    def __init__(self, permission: str) -> None:
        super().__init__(f"this needs the permission {permission!r}")
        self.permission = permission


class WrongShard(AccountsError):
    """The owner's accounts live on another shard; the caller (the gateway) routes there."""

    def __init__(self, owner_id: str, home: int, here: int) -> None:
        super().__init__(f"the accounts of {owner_id!r} live on shard {home}, this is shard {here}")
        self.home = home


class InvalidBranchRef(AccountsError):
    """A transfer or branch id that cannot name a branch (empty, too long, odd characters)."""


class CoordinatorBug(AccountsError):
    """A call no correct coordinator makes (commit of an aborted branch, abort of a
    committed one, the same branch with other terms). Refused and logged loudly."""


class BranchNotCommittable(CoordinatorBug):
    def __init__(self, transfer_id: str, branch_id: str, state: str) -> None:
        super().__init__(f"commit of branch {transfer_id}/{branch_id}, which is {state}")


class BranchNotAbortable(CoordinatorBug):
    def __init__(self, transfer_id: str, branch_id: str) -> None:
        super().__init__(f"abort of branch {transfer_id}/{branch_id}, which is committed")


class BranchConflict(CoordinatorBug):
    def __init__(self, transfer_id: str, branch_id: str) -> None:
        super().__init__(f"branch {transfer_id}/{branch_id} was prepared with other terms")


class TransferConflict(CoordinatorBug):
    def __init__(self, transfer_id: str) -> None:
        super().__init__(f"transfer {transfer_id} was already asked for with other terms")


class CoordinatorUnreachable(Exception):
    """No coordinator instance answered the outcome question usably; ask again later."""
