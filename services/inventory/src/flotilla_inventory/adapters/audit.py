"""The inventory's audit trail: the kit's hash-chained log in the inventory database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_inventory.adapters.tables import audit_events
from flotilla_kit.audit import AuditLog

__all__ = ["AUDIT_LOG", "SqlAuditTrail"]

AUDIT_LOG = AuditLog(audit_events)


class SqlAuditTrail:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(
        self, *, actor: str, action: str, target: str, details: Mapping[str, Any]
    ) -> None:
        await AUDIT_LOG.append(
            self.session, actor=actor, action=action, target=target, details=details
        )
