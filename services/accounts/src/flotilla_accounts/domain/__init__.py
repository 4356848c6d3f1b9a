"""Ledger rules and types. No I/O and no framework imports live here."""

from flotilla_accounts.domain.account import (
    Account,
    AccountKind,
    new_account_id,
    shard_of,
    system_account_id,
)
from flotilla_accounts.domain.money import CURRENCIES, MAX_AMOUNT_MINOR, Money, UnknownCurrency
from flotilla_accounts.domain.posting import Entry, Posting, UnbalancedPosting

__all__ = [
    "CURRENCIES",
    "MAX_AMOUNT_MINOR",
    "Account",
    "AccountKind",
    "Entry",
    "Money",
    "Posting",
    "UnbalancedPosting",
    "UnknownCurrency",
    "new_account_id",
    "shard_of",
    "system_account_id",
]
