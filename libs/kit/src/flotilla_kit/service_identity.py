"""A service's own access token (OAuth 2.0 client credentials), for calls to other services.

The service proves who it is with the key of its TLS certificate (RFC 7523
`private_key_jwt`): it signs a short-lived assertion with that key and sends the
certificate along (`x5c`); the auth service checks that the certificate is issued by the
CA it trusts and names a known service, then answers with an access token for that
service's role. No shared secret exists to leak, and the identity is the same one the
peer sees in the mTLS handshake. The token is cached until shortly before it expires.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["CLIENT_ASSERTION_TYPE", "ServiceTokenProvider", "client_assertion"]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ASSERTION_TTL_S = 60
_RENEW_BEFORE_S = 60


def client_assertion(client_id: str, audience: str, cert_file: Path, key_file: Path) -> str:
    """A one-minute JWT, signed ES256 with the service's TLS key, carrying its certificate."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + _ASSERTION_TTL_S,
        "jti": uuid.uuid4().hex,
    }
    chain = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    return jwt.encode(claims, key, algorithm="ES256", headers={"x5c": chain})  # type: ignore[arg-type]


class ServiceTokenProvider:
    def __init__(
        self,
        client_id: str,
        token_urls: Sequence[str],
        *,
        cert_file: Path,
        key_file: Path,
        ssl_context: ssl.SSLContext,
        audience: str = "flotilla-auth",
        timeout_s: float = 3.0,
    ) -> None:
        self.client_id = client_id
        self._urls = list(token_urls)
        self._cert_file = cert_file
        self._key_file = key_file
        self._ssl = ssl_context
        self._audience = audience
        self._timeout_s = timeout_s
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if self._token is not None and time.time() < self._expires_at - _RENEW_BEFORE_S:
            return self._token
        async with self._lock:
            if self._token is None or time.time() >= self._expires_at - _RENEW_BEFORE_S:
                await self._fetch()
        assert self._token is not None
        return self._token

    async def _fetch(self) -> None:
        errors: list[str] = []
        async with httpx.AsyncClient(verify=self._ssl, timeout=self._timeout_s) as client:
            for url in self._urls:
                # A fresh assertion per attempt: each is single use (its jti is remembered).
                form = {
                    "grant_type": "client_credentials",
                    "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": client_assertion(
                        self.client_id, self._audience, self._cert_file, self._key_file
                    ),
                }
                try:
                    response = await client.post(url, data=form)
                except httpx.HTTPError as exc:
                    errors.append(f"{url}: {exc!r}")
                    continue
                if response.status_code == 200:
                    body = response.json()
                    self._token = str(body["access_token"])
                    self._expires_at = time.time() + float(body["expires_in"])
                    return
                errors.append(f"{url}: {response.status_code} {response.text[:200]}")
        raise RuntimeError("no service token: " + "; ".join(errors))
