"""Small helpers the SQL repositories share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, Result

__all__ = ["count_rows"]


def count_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE touched."""
    # DML statements always produce a cursor result; the type is only widened by the API.
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
