"""HTTPS for clients, mutual TLS to the services, certificates from the dev CA."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx
import pytest

from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths

from .harness import Stack


async def test_https_in_and_mutual_tls_out(
    stack: Stack, tokens: TokenMinter, dev_pki: Callable[[str], CertificatePaths]
) -> None:
    auth = await stack.upstream("auth", tls=True)
    accounts = await stack.upstream("accounts", tls=True)
    await stack.start_gateway(tls=True, jwks_urls=[f"{auth.url}/.well-known/jwks.json"])
    assert stack.base_url.startswith("https://")

    async with stack.client() as client:
        protected = await client.get(
            "/api/v1/accounts/acc-1", headers={"Authorization": f"Bearer {tokens.mint()}"}
        )
        public = await client.post("/api/v1/auth/token", json={"username": "ada"})
    assert protected.status_code == 200
    assert protected.headers["x-instance"] == "accounts-0"
    seen = {name.lower(): value for name, value in protected.json()["headers"]}
    assert seen["x-forwarded-proto"] == "https"
    assert public.status_code == 200
    # The revocation list came from the auth instance over mutual TLS too.
    assert stack.authenticator.verifier.revocations.fetched

    ca = dev_pki("gateway").ca
    # The services really insist on a client certificate: without one, no answer.
    without_certificate = ssl.create_default_context(cafile=str(ca))
    async with httpx.AsyncClient(verify=without_certificate) as direct:
        with pytest.raises(httpx.TransportError):
            await direct.get(f"{accounts.url}/api/v1/accounts/acc-1")
    # Clients of the gateway need none, but must trust its CA.
    async with httpx.AsyncClient(verify=ssl.create_default_context()) as untrusting:
        with pytest.raises(httpx.ConnectError):
            await untrusting.get(f"{stack.base_url}/livez")
