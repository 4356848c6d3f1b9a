"""Bearer tokens: parsed here, verified by the kit's `TokenVerifier`, kept fresh in the background.

The gateway has one `TokenVerifier` for its whole life. Its `cached()` is the hot path: a
known, unexpired, unrevoked token is authenticated without a task or an await. Only the
first sight of a token goes through `verify()`.

Where keys and revocations come from can change while the gateway runs (with no URLs
configured, they come from the `auth` instances in the topology). The verifier then gets
a new `JwksCache` at once, and a new `RevocationList` once that list has answered: until
then the previous list stays in force, so a restarted auth instance does not open a
window in which revoked sessions are accepted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence

from flotilla_kit.logs import get_logger
from flotilla_kit.revocations import RevocationList
from flotilla_kit.tokens import JwksCache, Principal, TokenError, TokenVerifier

__all__ = ["Authenticator", "bearer_token"]

_log = get_logger("flotilla.gateway.authentication")


def bearer_token(header: bytes | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if header is None or header[:7].lower() != b"bearer ":
        return None
    token = header[7:].strip()
    if not token or not token.isascii():
        return None
    return token.decode("ascii")


class Authenticator:
    """The gateway's `TokenVerifier` and the loop that keeps its keys and revocations fresh."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_urls: Sequence[str],
        revocation_urls: Sequence[str],
        ssl_context: ssl.SSLContext | None,
        revocation_refresh_s: float,
        jwks_refresh_s: float = 300.0,
        first_fetch_wait_s: float = 5.0,
    ) -> None:
        self._ssl = ssl_context
        self._revocation_refresh_s = revocation_refresh_s
        self._jwks_refresh_s = jwks_refresh_s
        self._first_fetch_wait_s = first_fetch_wait_s
        self._verifier = TokenVerifier(
            JwksCache(jwks_urls, ssl_context=ssl_context),
            issuer=issuer,
            audience=audience,
            revocations=self._revocation_list(revocation_urls),
        )
        # A list from new sources, waiting to answer before it replaces the current one.
        self._pending: RevocationList | None = None
        # Lists replaced, whose kept-alive connections the refresh loop closes.
        self._retired: list[RevocationList] = []
        # Set once the current list has been asked at least once (or has nobody to ask):
        # the first sight of a token waits for it, so a revoked session is not let in
        # while the gateway starts.
        self._asked = asyncio.Event()
        if not revocation_urls:
            self._asked.set()
        self._wake = asyncio.Event()

    @property
    def verifier(self) -> TokenVerifier:
        """The one verifier, for the gateway's whole life (the dispatcher binds its `cached`)."""
        return self._verifier

    def _revocation_list(self, urls: Sequence[str]) -> RevocationList:
        return RevocationList(urls, ssl_context=self._ssl, refresh_s=self._revocation_refresh_s)

    # sources

    def use_jwks(self, urls: Sequence[str]) -> None:
        """Fetch keys from `urls` from now on (when a `kid` is first needed).

        With no URL left (every auth instance gone for a moment), the keys already
        fetched stay: they are still the auth service's keys.
        """
        if urls:
            self.verifier.jwks = JwksCache(urls, ssl_context=self._ssl)

    def use_revocations(self, urls: Sequence[str]) -> None:
        """Fetch revocations from `urls` from now on.

        A list that has answered stays in force until a list from the new sources has
        answered too (with no URL left, until there are some again): revoked sessions
        stay refused while auth instances come and go.
        """
        if self._pending is not None:
            self._retired.append(self._pending)
        if self.verifier.revocations.fetched:
            self._pending = self._revocation_list(urls) if urls else None
        else:
            self._pending = None
            self._retired.append(self.verifier.revocations)
            self.verifier.revocations = self._revocation_list(urls)
            if urls:
                self._asked.clear()
            else:
                self._asked.set()
        self._wake.set()

    # verification (the slow path; the hot path calls `verifier.cached`)

    async def verify(self, token: str) -> Principal | None:
        """Verify a token not seen before; None when it is not acceptable."""
        if not self._asked.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._first_fetch_wait_s):
                    await self._asked.wait()
        try:
            return await self.verifier.verify(token)
        except TokenError as error:
            _log.info("token rejected", reason=str(error))
            return None

    # freshness

    async def refresh(self) -> None:
        """Fetch the revocation list once: from new sources first, if there are any."""
        pending = self._pending
        if pending is not None:
            await pending.refresh()
            if self._pending is pending and pending.fetched:
                self._pending = None
                self._retired.append(self.verifier.revocations)
                self.verifier.revocations = pending
                self._asked.set()
                return
        current = self.verifier.revocations
        await current.refresh()
        if self.verifier.revocations is current:
            self._asked.set()

    async def run(self) -> None:
        """Refresh revocations every `revocation_refresh_s`, at once when their sources
        change, and keys every `jwks_refresh_s`; runs until cancelled."""
        loop = asyncio.get_running_loop()
        keys_due = loop.time() + self._jwks_refresh_s
        try:
            while True:
                self._wake.clear()
                try:
                    await self._close_retired()
                    await self.refresh()
                    if loop.time() >= keys_due:
                        keys_due = loop.time() + self._jwks_refresh_s
                        # Keys the auth service stopped publishing leave the cache too.
                        await self.verifier.jwks.refresh()
                except Exception:  # the loop must outlive one bad round
                    _log.exception("refreshing revocations or keys failed")
                delay = self._revocation_refresh_s
                if self._pending is not None:
                    # New sources that did not answer yet (an auth instance starting): retry soon.
                    delay = min(delay, 1.0)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
        finally:
            self._retired += [self.verifier.revocations, *filter(None, [self._pending])]
            await self._close_retired()

    async def _close_retired(self) -> None:
        retired, self._retired = self._retired, []
        for revocations in retired:
            await revocations.aclose()
