"""Candidate 4: granian (its Rust HTTP server, one worker process, one runtime thread,
uvloop) serving an RSGI app, granian's own interface (its fastest, leaner than ASGI),
forwarding with one `aiohttp.ClientSession` made when the worker starts.

    python -m flotilla_cli.bench.stacks.granian_aiohttp --port P --upstream URL

The granian process supervises a worker process that serves: its CPU time is counted too.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Protocol

from aiohttp import ClientSession
from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes
from granian.log import LogLevels
from granian.rsgi import Scope
from granian.server import Server

from flotilla_cli.bench.stacks.aiohttp_client import open_session
from flotilla_cli.bench.stacks.job import FORWARDED_HEADER, HOST, parse_args

__all__ = ["Proxy", "main"]

_NOT_ALLOWED: list[tuple[str, str]] = [("allow", "GET"), ("content-length", "0")]


class _Responder(Protocol):
    """What this app uses of granian's RSGI HTTP protocol object."""

    def response_empty(self, status: int, headers: list[tuple[str, str]]) -> None: ...

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...


class Proxy:
    """The RSGI application (called per request); granian calls __rsgi_init__ and
    __rsgi_del__ in the worker around serving, with the worker's loop (not running yet,
    nor any more)."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._session: ClientSession | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._session = loop.run_until_complete(self._open())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._session is not None:
            loop.run_until_complete(self._session.close())

    @staticmethod
    async def _open() -> ClientSession:
        return open_session()

    async def __call__(self, scope: Scope, protocol: _Responder) -> None:
        if scope.proto != "http":
            return
        if scope.method != "GET":
            protocol.response_empty(405, _NOT_ALLOWED)
            return
        assert self._session is not None  # __rsgi_init__ has run
        target = scope.path + ("?" + scope.query_string if scope.query_string else "")
        value = scope.headers.get(FORWARDED_HEADER)
        headers = {FORWARDED_HEADER: value} if value else None
        async with self._session.get(self._upstream + target, headers=headers) as answer:
            body = await answer.read()
            kind = answer.headers.get("content-type")
        protocol.response_bytes(answer.status, [("content-type", kind)] if kind else [], body)


def _load(upstream: str) -> Proxy:
    # Called in the worker process (a module-level function: picklable whichever way
    # multiprocessing starts the worker).
    return Proxy(upstream)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("granian (RSGI, one worker), aiohttp.ClientSession.", argv)
    server = Server(
        f"{__name__}:Proxy",  # names the app in granian's logs; _load builds it
        address=HOST,
        port=args.port,
        interface=Interfaces.RSGI,
        workers=1,
        runtime_threads=1,
        runtime_mode=RuntimeModes.st,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels.warning,
        log_access=False,
    )
    server.serve(target_loader=functools.partial(_load, args.upstream), wrap_loader=False)


if __name__ == "__main__":
    main()
