"""The claims of the access tokens the auth service issues, read with the chassis's
verifier (`flotilla_kit.tokens`: signature, issuer, audience, expiry), so the roles a page
trusts are the ones auth signed."""

from __future__ import annotations

import datetime as dt

from flotilla_kit.tokens import TokenError, TokenVerifier
from flotilla_web.domain import ApiFailed
from flotilla_web.service_layer.ports import TokenClaims

__all__ = ["VerifiedTokens"]


class VerifiedTokens:
    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def read(self, access_token: str) -> TokenClaims:
        try:
            principal = await self._verifier.verify(access_token)
        except TokenError as error:
            raise ApiFailed(
                502, f"the auth service issued a token we cannot read: {error}"
            ) from None
        return TokenClaims(
            subject=principal.subject,
            roles=principal.roles,
            expires_at=dt.datetime.fromtimestamp(principal.expires_at, dt.UTC),
        )
