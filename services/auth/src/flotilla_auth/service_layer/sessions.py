"""Sessions seen from outside: which were revoked recently (the list every verifier polls),
and the housekeeping of short-lived records."""

from __future__ import annotations

from datetime import datetime, timedelta

from flotilla_auth.domain.token_policy import REVOCATION_WINDOW_S
from flotilla_auth.service_layer.ports import UnitOfWorkFactory

__all__ = ["forget_expired_records", "revoked_sessions"]


async def revoked_sessions(*, uow: UnitOfWorkFactory, now: datetime) -> list[str]:
    """Ids of the sessions (refresh-token families) revoked within the longest access-token
    lifetime plus skew: logout, refresh-token reuse, a locked user, a password change, a
    role taken away. Older revocations need no listing; their access tokens have expired."""
    async with uow(write=False) as reader:
        since = now - timedelta(seconds=REVOCATION_WINDOW_S)
        return list(await reader.refresh_tokens.families_revoked_since(since))


async def forget_expired_records(*, uow: UnitOfWorkFactory, now: datetime) -> int:
    """Delete failed-login counters and spent client-assertion ids that no longer matter."""
    async with uow() as writer:
        deleted = await writer.login_throttles.delete_expired(now)
        deleted += await writer.client_assertions.delete_expired(now)
        await writer.commit()
    return deleted
