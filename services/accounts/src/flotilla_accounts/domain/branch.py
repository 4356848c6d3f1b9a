"""The ledger's side of two-phase commit: branches, votes, and the local transfer.

A branch is one account's part in a transfer that spans shards, keyed by
(transfer id, branch id). Its life: PREPARED (a debit holds the amount), then COMMITTED
(the posting is written) or ABORTED (the hold is released). An ABORTED branch without
terms is a tombstone: the Abort came before any Prepare, and a late Prepare is refused.
A NO vote is recorded as an ABORTED branch with its refusal, so that asking again gets
the same answer even after the account changed.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

__all__ = [
    "Branch",
    "BranchStatus",
    "BranchTerms",
    "Direction",
    "LocalTransfer",
    "Outcome",
    "Refusal",
    "Vote",
]


class Direction(enum.StrEnum):
    DEBIT = "debit"  # money leaves the account: Prepare holds it
    CREDIT = "credit"  # money arrives: Prepare only records it


class BranchStatus(enum.StrEnum):
    PREPARED = "prepared"
    COMMITTED = "committed"
    ABORTED = "aborted"


class Refusal(enum.StrEnum):
    INSUFFICIENT_FUNDS = "insufficient_funds"
    ACCOUNT_NOT_FOUND = "account_not_found"  # also: not the required owner's account
    CURRENCY_MISMATCH = "currency_mismatch"
    ALREADY_ABORTED = "already_aborted"
    WRONG_SHARD = "wrong_shard"
    INVALID = "invalid"


class Outcome(enum.StrEnum):
    """What the coordinator says became of a transfer."""

    COMMIT = "commit"
    ABORT = "abort"
    PENDING = "pending"  # not decided yet: ask again later


@dataclass(frozen=True, slots=True)
class Vote:
    refusal: Refusal | None = None
    detail: str = ""

    @property
    def yes(self) -> bool:
        return self.refusal is None


@dataclass(frozen=True, slots=True)
class BranchTerms:
    account_id: str
    direction: Direction
    amount_minor: int
    currency: str
    reference: str = ""

    def same_as(self, other: BranchTerms) -> bool:
        """Whether a repeated Prepare asks for the same thing (the reference is a label)."""
        return (self.account_id, self.direction, self.amount_minor, self.currency) == (
            other.account_id,
            other.direction,
            other.amount_minor,
            other.currency,
        )


@dataclass(frozen=True, slots=True)
class Branch:
    transfer_id: str
    branch_id: str
    status: BranchStatus
    terms: BranchTerms | None  # None only for a tombstone
    created_at: dt.datetime
    updated_at: dt.datetime
    refusal: Refusal | None = None  # why this participant voted NO, if it did
    posting_id: str | None = None  # the posting written by Commit

    @property
    def is_tombstone(self) -> bool:
        return self.terms is None

    def vote(self) -> Vote:
        """The answer to a Prepare of a branch already known: the first vote, or NO for a
        branch the coordinator has aborted since (it must never be committed)."""
        if self.status is BranchStatus.ABORTED:
            refusal = self.refusal or Refusal.ALREADY_ABORTED
            return Vote(refusal, f"branch already aborted ({refusal.value})")
        return Vote()


@dataclass(frozen=True, slots=True)
class LocalTransfer:
    """A transfer with both accounts on this shard, decided in one database transaction.
    Its outcome (applied, or refused with a reason) is kept, so a transfer id has one
    answer forever."""

    transfer_id: str
    from_account: str
    to_account: str
    amount_minor: int
    currency: str
    reference: str
    created_at: dt.datetime
    refusal: Refusal | None = None
    detail: str = ""
    posting_id: str | None = None

    @property
    def applied(self) -> bool:
        return self.refusal is None

    def same_as(self, other: LocalTransfer) -> bool:
        return (
            self.from_account,
            self.to_account,
            self.amount_minor,
            self.currency,
        ) == (other.from_account, other.to_account, other.amount_minor, other.currency)
