"""The audit trail of the auth service: the kit's hash-chained log in our own database."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flotilla_auth.adapters.tables import audit_log
from flotilla_kit.db import Transaction

__all__ = ["SqlAuditTrail"]

# The widths of the kit's columns: longer values (a 10 kB "username" typed into a login
# form) are cut rather than refused, so a refusal can always be recorded.
_ACTOR_MAX, _TARGET_MAX = 128, 200


class SqlAuditTrail:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def record(
        self,
        *,
        actor: str,
        action: str,
        at: datetime,
        target: str | None = None,
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        await audit_log.append(
            self._transaction,
            actor=actor[:_ACTOR_MAX],
            action=action,
            target=target[:_TARGET_MAX] if target is not None else None,
            outcome=outcome,
            details=details,
            at=at,
        )
