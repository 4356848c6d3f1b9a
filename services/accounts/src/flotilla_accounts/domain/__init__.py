"""Ledger rules and types. No I/O and no framework imports live here."""

from flotilla_accounts.domain.account import (
    Account,
    AccountKind,
    AvailableWouldGoNegative,
    cash_account_id,
    is_account_id_of,
    new_account_id,
    settlement_account_id,
)
from flotilla_accounts.domain.branch import (
    Branch,
    BranchStatus,
    BranchTerms,
    Direction,
    LocalTransfer,
    Outcome,
    Refusal,
    Vote,
)
from flotilla_accounts.domain.money import CURRENCIES, MAX_AMOUNT_MINOR, Money, UnknownCurrency
from flotilla_accounts.domain.posting import Entry, Posting, UnbalancedPosting
from flotilla_accounts.domain.statement import StatementLine

__all__ = [
    "CURRENCIES",
    "MAX_AMOUNT_MINOR",
    "Account",
    "AccountKind",
    "AvailableWouldGoNegative",
    "Branch",
    "BranchStatus",
    "BranchTerms",
    "Direction",
    "Entry",
    "LocalTransfer",
    "Money",
    "Outcome",
    "Posting",
    "Refusal",
    "StatementLine",
    "UnbalancedPosting",
    "UnknownCurrency",
    "Vote",
    "cash_account_id",
    "is_account_id_of",
    "new_account_id",
    "settlement_account_id",
]
