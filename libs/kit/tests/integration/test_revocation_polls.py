"""A `RevocationList` polls over one kept-alive connection and sends the ETag it holds:
an unchanged list comes back `304` and stays in force; a changed one replaces it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flotilla_kit.devservers import free_port
from flotilla_kit.revocations import RevocationList
from flotilla_kit.testing import running_server


class AuthStandIn:
    def __init__(self) -> None:
        self.sessions = ["s1"]
        self.seen: list[tuple[str | None, int]] = []  # (If-None-Match, client port)

    async def revocations(self, request: Request) -> Response:
        etag = '"' + ",".join(self.sessions) + '"'
        asked = request.headers.get("if-none-match")
        assert request.client is not None
        self.seen.append((asked, request.client.port))
        if asked == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse({"sessions": self.sessions}, headers={"ETag": etag})


@pytest.fixture
async def auth() -> AsyncIterator[tuple[AuthStandIn, str]]:
    stand_in = AuthStandIn()
    port = free_port()
    app = Starlette(routes=[Route("/revocations", stand_in.revocations)])
    async with running_server(uvicorn.Config(app, port=port, log_config=None, lifespan="off")):
        yield stand_in, f"http://127.0.0.1:{port}/revocations"


async def test_polls_reuse_the_connection_and_an_unchanged_list_stays(
    auth: tuple[AuthStandIn, str],
) -> None:
    stand_in, url = auth
    revocations = RevocationList([url])
    try:
        await revocations.refresh()
        await revocations.refresh()
        assert revocations.revoked("s1")
        stand_in.sessions = ["s1", "s2"]
        await revocations.refresh()
        assert revocations.revoked("s2")
    finally:
        await revocations.aclose()
    asked = [etag for etag, _ in stand_in.seen]
    assert asked == [None, '"s1"', '"s1"']
    assert len({port for _, port in stand_in.seen}) == 1  # one connection for all three
