"""Candidate 3: an aiohttp.web server (on uvloop, no access log) forwarding with one
`aiohttp.ClientSession` made at start-up.

    python -m flotilla_cli.bench.stacks.aiohttp_aiohttp --port P --upstream URL
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import uvloop
from aiohttp import ClientSession, web

from flotilla_cli.bench.stacks.aiohttp_client import open_session
from flotilla_cli.bench.stacks.job import FORWARDED_HEADER, HOST, parse_args

__all__ = ["build_app", "main"]

_SESSION = web.AppKey("session", ClientSession)


def build_app(upstream: str) -> web.Application:
    async def client(app: web.Application) -> AsyncIterator[None]:
        async with open_session() as session:
            app[_SESSION] = session
            yield

    async def forward(request: web.Request) -> web.Response:
        value = request.headers.get(FORWARDED_HEADER)
        headers = {FORWARDED_HEADER: value} if value else None
        session = request.app[_SESSION]
        # raw_path: the target as the client sent it, query included.
        async with session.get(upstream + request.raw_path, headers=headers) as answer:
            body = await answer.read()
            kind = answer.headers.get("content-type")
            return web.Response(
                body=body, status=answer.status, headers={"content-type": kind} if kind else None
            )

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_get("/{path:.*}", forward, allow_head=False)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("aiohttp.web server, aiohttp.ClientSession.", argv)
    web.run_app(
        build_app(args.upstream), host=HOST, port=args.port, access_log=None, print=None,
        loop=uvloop.new_event_loop(),
    )  # fmt: skip


if __name__ == "__main__":
    main()
