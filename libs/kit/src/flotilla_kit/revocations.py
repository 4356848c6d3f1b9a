"""Sessions revoked before their access tokens expire (logout, refresh-token reuse).

Access tokens are checked without calling the auth service, so a revoked session's
tokens would live until `exp`. The auth service publishes the ids of sessions revoked
within the longest access-token lifetime; every verifier polls that list and refuses a
token whose `sid` is on it. A revocation takes effect within one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence

import httpx

from flotilla_kit.logs import get_logger

__all__ = ["RevocationList"]

_log = get_logger("flotilla.revocations")


class RevocationList:
    def __init__(
        self,
        urls: Sequence[str] = (),
        *,
        ssl_context: ssl.SSLContext | None = None,
        refresh_s: float = 5.0,
        timeout_s: float = 2.0,
    ) -> None:
        self._urls = list(urls)
        self._ssl = ssl_context
        self.refresh_s = refresh_s
        self._timeout_s = timeout_s
        self._revoked: frozenset[str] = frozenset()
        self.fetched = False

    def revoked(self, session_id: str | None) -> bool:
        return session_id is not None and session_id in self._revoked

    def load(self, session_ids: Sequence[str]) -> None:
        self._revoked = frozenset(session_ids)
        self.fetched = True

    async def refresh(self) -> None:
        if not self._urls:
            return
        verify: ssl.SSLContext | bool = self._ssl if self._ssl is not None else True
        async with httpx.AsyncClient(verify=verify, timeout=self._timeout_s) as client:
            for url in self._urls:
                try:
                    response = await client.get(url)
                    response.raise_for_status()
                    sessions = response.json()["sessions"]
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                    _log.warning("could not fetch revocations", url=url, error=repr(exc))
                    continue
                if isinstance(sessions, list) and all(isinstance(s, str) for s in sessions):
                    self.load(sessions)
                    return

    async def run(self) -> None:
        """Poll until cancelled (started by the app's lifespan when URLs are set)."""
        while True:
            with contextlib.suppress(Exception):
                await self.refresh()
            await asyncio.sleep(self.refresh_s)
