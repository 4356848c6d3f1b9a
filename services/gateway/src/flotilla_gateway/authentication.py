"""Bearer tokens: parsed, verified by the kit's `TokenVerifier`, remembered until expiry.

The verifier already caches verified tokens, but behind a coroutine. The gateway keeps
its own synchronous view of the tokens it has seen verified, so a request with a known,
unexpired token is authenticated without a task or an await; only the first sight of a
token goes through the verifier.
"""

from __future__ import annotations

import time

from flotilla_kit.logs import get_logger
from flotilla_kit.tokens import Principal, TokenError, TokenVerifier

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
    def __init__(self, verifier: TokenVerifier, *, max_cached: int = 10_000) -> None:
        self._verifier = verifier
        self._max_cached = max_cached
        self._verified: dict[str, Principal] = {}

    @property
    def verifier(self) -> TokenVerifier:
        return self._verifier

    @verifier.setter
    def verifier(self, verifier: TokenVerifier) -> None:
        # Other keys, other truths: forget what the previous verifier accepted.
        self._verifier = verifier
        self._verified.clear()

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before and not yet expired, else None."""
        principal = self._verified.get(token)
        if principal is not None and principal.expires_at > time.time():
            return principal
        return None

    async def verify(self, token: str) -> Principal | None:
        """Verify a token not seen before; None when it is not acceptable."""
        try:
            principal = await self._verifier.verify(token)
        except TokenError as error:
            _log.info("token rejected", reason=str(error))
            return None
        if len(self._verified) >= self._max_cached:
            now = time.time()
            for known, seen in list(self._verified.items()):
                if seen.expires_at <= now:
                    del self._verified[known]
            while len(self._verified) >= self._max_cached:
                del self._verified[next(iter(self._verified))]  # oldest first
        self._verified[token] = principal
        return principal
