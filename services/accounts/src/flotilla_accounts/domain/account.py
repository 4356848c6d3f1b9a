"""Accounts. A customer account can never go below zero, counting what is held: its
available balance (balance minus holds) is never negative. A system account (the bank's
cash and settlement accounts per shard and currency) can, so that the ledger balances."""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from dataclasses import dataclass

__all__ = [
    "Account",
    "AccountKind",
    "AvailableWouldGoNegative",
    "cash_account_id",
    "new_account_id",
    "settlement_account_id",
]


class AvailableWouldGoNegative(Exception):
    """The ledger refused a change: a customer's available balance would drop below zero
    (the database's CHECK constraint said so, whatever the code checked before)."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} would go below zero")
        self.account_id = account_id


class AccountKind(enum.StrEnum):
    CUSTOMER = "customer"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    owner_id: str
    name: str
    currency: str
    balance_minor: int
    kind: AccountKind
    created_at: dt.datetime
    # Promised to prepared debits of transfers not decided yet; not spendable meanwhile.
    held_minor: int = 0

    @property
    def available_minor(self) -> int:
        return self.balance_minor - self.held_minor


def new_account_id(shard: int) -> str:
    """Account ids carry their ledger shard, so any service can route to it without a lookup:
    `acc_<shard>_<32 hex>`."""
    return f"acc_{shard}_{uuid.uuid4().hex}"


_CUSTOMER_ID = re.compile(r"acc_(\d+)_[0-9a-f]{32}")


def is_account_id_of(account_id: str, shard: int) -> bool:
    """Whether `account_id` is a customer account id of the form `new_account_id` makes,
    on `shard`."""
    found = _CUSTOMER_ID.fullmatch(account_id)
    return found is not None and int(found.group(1)) == shard


def cash_account_id(shard: int, currency: str) -> str:
    """The other side of every deposit on a shard."""
    return f"sys_{shard}_cash_{currency.lower()}"


def settlement_account_id(shard: int, currency: str) -> str:
    """The other side of every cross-shard transfer branch on a shard: a debit branch moves
    money from the customer into it, a credit branch out of it. Summed over all shards the
    settlement accounts of a currency are zero once both branches of every transfer are
    committed."""
    return f"sys_{shard}_settlement_{currency.lower()}"
