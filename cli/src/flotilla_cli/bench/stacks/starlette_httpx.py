"""Candidate 1: a Starlette app under uvicorn (uvloop + httptools), forwarding with one
`httpx.AsyncClient` made in the lifespan: the way the FastAPI template calls other services.

    python -m flotilla_cli.bench.stacks.starlette_httpx --port P --upstream URL
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flotilla_cli.bench.stacks.job import (
    FORWARDED_HEADER,
    HOST,
    POOL_IDLE_S,
    UPSTREAM_TIMEOUT_S,
    asgi_target,
    parse_args,
)

__all__ = ["build_app", "main"]


def build_app(upstream: str) -> Starlette:
    client: httpx.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal client
        # Unbounded pool, every connection kept alive: no candidate is slowed by its
        # pool's default size (httpx keeps 20 idle connections, wrk opens 50).
        limits = httpx.Limits(
            max_connections=None, max_keepalive_connections=None, keepalive_expiry=POOL_IDLE_S
        )
        async with httpx.AsyncClient(
            base_url=upstream, limits=limits, timeout=UPSTREAM_TIMEOUT_S
        ) as client:
            yield

    async def forward(request: Request) -> Response:
        assert client is not None  # the lifespan has run
        target = asgi_target(request.scope)
        value = request.headers.get(FORWARDED_HEADER)
        answer = await client.get(target, headers={FORWARDED_HEADER: value} if value else None)
        kind = answer.headers.get("content-type")
        return Response(
            answer.content, answer.status_code, headers={"content-type": kind} if kind else None
        )

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET"])], lifespan=lifespan)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("Starlette under uvicorn, httpx.AsyncClient.", argv)
    uvicorn.run(
        build_app(args.upstream), host=HOST, port=args.port, loop="uvloop", http="httptools",
        lifespan="on", access_log=False, log_level="warning",
    )  # fmt: skip


if __name__ == "__main__":
    main()
