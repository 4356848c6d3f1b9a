"""Candidate 2: the same Starlette app under uvicorn (uvloop + httptools), forwarding with
one `aiohttp.ClientSession` made in the lifespan.

    python -m flotilla_cli.bench.stacks.starlette_aiohttp --port P --upstream URL
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import uvicorn
from aiohttp import ClientSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flotilla_cli.bench.stacks.aiohttp_client import open_session
from flotilla_cli.bench.stacks.job import FORWARDED_HEADER, HOST, asgi_target, parse_args

__all__ = ["build_app", "main"]


def build_app(upstream: str) -> Starlette:
    session: ClientSession | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal session
        async with open_session() as session:
            yield

    async def forward(request: Request) -> Response:
        assert session is not None  # the lifespan has run
        target = asgi_target(request.scope)
        value = request.headers.get(FORWARDED_HEADER)
        headers = {FORWARDED_HEADER: value} if value else None
        async with session.get(upstream + target, headers=headers) as answer:
            body = await answer.read()
            kind = answer.headers.get("content-type")
            return Response(body, answer.status, headers={"content-type": kind} if kind else None)

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET"])], lifespan=lifespan)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("Starlette under uvicorn, aiohttp.ClientSession.", argv)
    uvicorn.run(
        build_app(args.upstream), host=HOST, port=args.port, loop="uvloop", http="httptools",
        lifespan="on", access_log=False, log_level="warning",
    )  # fmt: skip


if __name__ == "__main__":
    main()
