"""A line of an account statement: one entry, with what its posting says about it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["StatementLine"]


@dataclass(frozen=True, slots=True)
class StatementLine:
    id: int
    posting_id: str
    kind: str
    amount_minor: int
    currency: str
    reference: str
    created_at: dt.datetime
