"""The JWKS cache against a real HTTPS server: refetch on an unknown kid, rate limited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flotilla_kit.devservers import free_port
from flotilla_kit.testing import TokenMinter, running_server
from flotilla_kit.tls import CertificatePaths, client_context
from flotilla_kit.tokens import JwksCache, TokenError, TokenVerifier


class JwksServer:
    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.status = 200
        self.requests = 0

    async def endpoint(self, _: Request) -> JSONResponse:
        self.requests += 1
        return JSONResponse(self.jwks, status_code=self.status)


@pytest.fixture
async def jwks_server(
    tokens: TokenMinter, dev_pki: Callable[[str], CertificatePaths]
) -> AsyncIterator[tuple[JwksServer, str, CertificatePaths]]:
    certs = dev_pki("auth")
    served = JwksServer({"keys": []})
    app = Starlette(routes=[Route("/.well-known/jwks.json", served.endpoint)])
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="off",
        ssl_certfile=str(certs.cert), ssl_keyfile=str(certs.key),
    )  # fmt: skip
    async with running_server(config):
        yield served, f"https://127.0.0.1:{port}/.well-known/jwks.json", certs


async def test_unknown_kid_triggers_one_refetch_per_interval(
    jwks_server: tuple[JwksServer, str, CertificatePaths], tokens: TokenMinter
) -> None:
    served, url, certs = jwks_server
    cache = JwksCache([url], ssl_context=client_context(certs.ca), min_refresh_s=60)
    verifier = TokenVerifier(cache, issuer=tokens.issuer, audience=tokens.audience)

    await cache.refresh()  # at start the auth service publishes no key yet
    assert served.requests == 1
    served.jwks = tokens.jwks  # now it does (as after a key rotation)
    with pytest.raises(TokenError, match="unknown kid"):
        await verifier.verify(tokens.mint("alice"))  # within the interval: no refetch
    assert served.requests == 1

    cache._next_fetch_at = 0  # the interval has passed
    principal = await verifier.verify(tokens.mint("alice"))
    assert principal.subject == "alice"
    assert served.requests == 2

    for n in range(20):  # a flood of made-up kids costs nothing upstream
        with pytest.raises(TokenError):
            await verifier.verify(tokens.mint("alice", headers={"kid": f"made-up-{n}"}))
    assert served.requests == 2


async def test_after_a_failed_fetch_the_next_try_comes_soon(
    jwks_server: tuple[JwksServer, str, CertificatePaths], tokens: TokenMinter
) -> None:
    served, url, certs = jwks_server
    served.status = 503  # the auth service is still starting
    cache = JwksCache(
        [url], ssl_context=client_context(certs.ca), min_refresh_s=60, retry_after_failure_s=0
    )
    verifier = TokenVerifier(cache, issuer=tokens.issuer, audience=tokens.audience)
    with pytest.raises(TokenError, match="unknown kid"):
        await verifier.verify(tokens.mint("alice"))
    served.status = 200
    served.jwks = tokens.jwks
    assert (await verifier.verify(tokens.mint("alice"))).subject == "alice"
    assert served.requests == 2
