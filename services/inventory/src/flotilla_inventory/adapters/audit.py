"""The inventory's audit trail: the kit's hash-chained log in the inventory database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flotilla_inventory.adapters.tables import audit_events
from flotilla_kit.audit import AuditLog
from flotilla_kit.db import Transaction

__all__ = ["AUDIT_LOG", "SqlAuditTrail"]

AUDIT_LOG = AuditLog(audit_events)


class SqlAuditTrail:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def record(
        self, *, actor: str, action: str, target: str, details: Mapping[str, Any]
    ) -> None:
        await AUDIT_LOG.append(
            self.transaction, actor=actor, action=action, target=target, details=details
        )
