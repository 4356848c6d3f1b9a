"""Double entry: every movement of money is a posting whose entries sum to zero per currency."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

__all__ = ["Entry", "Posting", "UnbalancedPosting"]


class UnbalancedPosting(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Entry:
    account_id: str
    amount_minor: int  # positive: credit (money in), negative: debit (money out)
    currency: str


@dataclass(frozen=True, slots=True)
class Posting:
    id: str
    kind: str
    reference: str
    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        if len(self.entries) < 2:
            raise UnbalancedPosting("a posting needs at least two entries")
        totals: dict[str, int] = defaultdict(int)
        for entry in self.entries:
            if entry.amount_minor == 0:
                raise UnbalancedPosting("an entry of zero moves nothing")
            totals[entry.currency] += entry.amount_minor
        if any(totals.values()):
            raise UnbalancedPosting(f"entries do not sum to zero: {dict(totals)}")
