"""Sessions revoked before their access tokens expire (logout, refresh-token reuse).

Access tokens are checked without calling the auth service, so a revoked session's
tokens would live until `exp`. The auth service publishes the ids of sessions revoked
within the longest access-token lifetime; every verifier polls that list and refuses a
token whose `sid` is on it. A revocation takes effect within one poll interval.

A poll is cheap at rest: one kept-alive connection for the life of the list (not a TLS
handshake per poll), and a conditional request (`If-None-Match` with the list's ETag)
that the auth service answers `304 Not Modified`, without a body, while nothing changed.
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
        self._etag: str | None = None
        self._client: httpx.AsyncClient | None = None

    def revoked(self, session_id: str | None) -> bool:
        return session_id is not None and session_id in self._revoked

    def load(self, session_ids: Sequence[str]) -> None:
        self._revoked = frozenset(session_ids)
        self.fetched = True

    async def refresh(self) -> None:
        if not self._urls:
            return
        if self._client is None:
            verify: ssl.SSLContext | bool = self._ssl if self._ssl is not None else True
            self._client = httpx.AsyncClient(
                verify=verify,
                timeout=self._timeout_s,
                # Longer than the poll interval, shorter than the services' keep-alive (30 s).
                limits=httpx.Limits(keepalive_expiry=20.0),
            )
        for url in self._urls:
            headers = {"If-None-Match": self._etag} if self._etag and self.fetched else {}
            try:
                response = await self._client.get(url, headers=headers)
                if response.status_code == 304 and self.fetched:
                    return
                response.raise_for_status()
                sessions = response.json()["sessions"]
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                _log.warning("could not fetch revocations", url=url, error=repr(exc))
                continue
            if isinstance(sessions, list) and all(isinstance(s, str) for s in sessions):
                self.load(sessions)
                self._etag = response.headers.get("etag")
                return

    async def aclose(self) -> None:
        """Close the kept-alive connection (a later `refresh` opens another)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def run(self) -> None:
        """Poll until cancelled (started by the app's lifespan when URLs are set)."""
        try:
            while True:
                with contextlib.suppress(Exception):
                    await self.refresh()
                await asyncio.sleep(self.refresh_s)
        finally:
            await self.aclose()
