"""Accounts. A customer account can never go below zero; a system account (the bank's cash
account per currency, the other side of every deposit) can, so that the ledger balances."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass

__all__ = ["Account", "AccountKind", "new_account_id", "shard_of", "system_account_id"]


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


def new_account_id(shard: int) -> str:
    """Account ids carry their ledger shard, so any service can route to it without a lookup:
    `acc_<shard>_<32 hex>`."""
    return f"acc_{shard}_{uuid.uuid4().hex}"


def system_account_id(shard: int, currency: str) -> str:
    return f"sys_{shard}_cash_{currency.lower()}"


def shard_of(account_id: str) -> int | None:
    """The shard encoded in an account id, or None when the id is not one of ours."""
    prefix, _, rest = account_id.partition("_")
    shard, _, tail = rest.partition("_")
    if prefix not in ("acc", "sys") or not shard.isdigit() or not tail:
        return None
    return int(shard)
